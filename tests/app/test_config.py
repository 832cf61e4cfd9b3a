import dataclasses
import re

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ValidationError

from helpers import cli, compose_train
from pyro_bnn.app.build import build_prior, option_name
from pyro_bnn.app.config import validate
from pyro_bnn.app.schema import CONF_DIR, ConfigError, EvaluateConfig, TrainConfig

GROUPS = ["data", "model", "likelihood", "prior", "guide", "inference", "eval"]


def options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_every_group_has_options():
    assert options("data") == ["cifar10", "digits", "fashion_mnist", "mnist", "toy_regression", "uci"]
    assert options("model") == ["cnn", "mlp", "tiny_cnn"]
    assert options("likelihood") == ["auto", "categorical", "gaussian", "heteroscedastic"]
    assert {"normal", "layerwise", "fan_in"} <= set(options("prior"))
    assert options("guide") == ["auto_delta", "auto_lowrank", "auto_normal"]


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_of_every_group_composes_and_validates(group, option):
    overrides = [f"{group}={option}"]
    if option in ("toy_regression", "uci"):
        overrides.append("model=mlp")
    if option in ("gaussian", "heteroscedastic"):
        overrides += ["data=toy_regression", "model=mlp"]
    cfg = compose_train(*overrides)
    validate(cfg)
    if group == "model" and option != "tiny_cnn":
        assert cfg.model._target_ == f"pyro_bnn.model.networks.Bayesian{option.upper()}"
    if group == "guide":
        assert cfg.guide._target_ == f"pyro_bnn.guides.{option}"
    if group == "data":
        assert cfg.data.loader == option
    if group == "prior" and option == "fan_in":
        assert cfg.prior.fan_in is True


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_preset_composes(experiment):
    validate(compose_train(f"+experiment={experiment}"))


def test_runs_stay_in_place_and_get_sub_second_run_dirs():
    hydra = compose_train(hydra_node=True).hydra
    assert hydra.job.chdir is False
    assert re.fullmatch(r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d\.\d{6}", hydra.run.dir)
    assert re.fullmatch(r"outputs/multirun/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d\.\d{6}", hydra.sweep.dir)


def test_defaults_are_the_digits_cnn_with_a_declared_kl_weight():
    cfg = compose_train()
    assert (cfg.data.name, option_name(cfg.model), option_name(cfg.guide), cfg.inference.elbo) == (
        "digits", "BayesianCNN", "auto_normal", "mean_field")
    assert cfg.inference.kl_weight == 0.03 and cfg.inference.kl_warmup_epochs == 0  # tempered: README says so
    # the recipe of benchmarks/results/*-ood_baselines.txt
    assert (list(cfg.model.channels), list(cfg.model.hidden), cfg.model.activation) == ([24, 48], [64], "gelu")
    assert (cfg.inference.estimator, cfg.inference.lr, cfg.inference.epochs) == ("dense_local_reparameterization", 0.01, 60)


@pytest.mark.parametrize("experiment", ["digits_mlp", "toy_regression", "nuts_toy_regression", "nuts_digits"])
def test_presets_compared_with_exact_posteriors_optimise_the_exact_elbo(experiment):
    inference = compose_train(f"+experiment={experiment}").inference
    assert (inference.kl_weight, inference.estimator) == (1.0, "shared")  # as their README figures were measured


@pytest.mark.parametrize("overrides, scales", [
    (["prior.layer_scales={net.4:0.1}"], {"net.4": 0.1}),
    (["+prior.layer_scales={net.4:0.1}"], {"net.4": 0.1}),
    (["prior.layer_scales.net.0=0.1"], {"net.0": 0.1}),
    (["prior=layerwise", "prior.layer_scales={net.4:0.1}"], {"net.0": 1.0, "net.4": 0.1}),  # added to the preset's
    (["prior=layerwise", "prior.layer_scales.net.0=0.1"], {"net.0": 0.1}),
])
def test_per_layer_prior_scales_take_every_natural_form_of_override(overrides, scales):
    cfg = compose_train(*overrides)
    validate(cfg)
    prior = build_prior(cfg.prior)
    assert prior.layer_scales == scales


def test_a_dotted_layer_scale_reaches_the_model_through_the_real_command():
    out = cli("pyro_bnn.train", "prior.layer_scales.net.0=0.1", "--cfg", "job")
    assert "layer_scales:\n    net:\n      '0': 0.1\n" in out.stdout  # joined into net.0 when the prior is built


@pytest.mark.parametrize("override, error", [
    ("data.batch_size=big", ValidationError),
    ("data.batch_siz=1", ConfigCompositionException),
    ("model=resnet", ConfigCompositionException),
])
def test_wrong_types_unknown_keys_and_options_fail_while_composing(override, error):
    with pytest.raises((error, ConfigCompositionException)):
        compose_train(override)


@pytest.mark.parametrize("group, option", [("prior", "normal"), ("prior", "student_t"), ("prior", "fan_in"),
                                           ("guide", "auto_normal"), ("guide", "auto_lowrank"), ("model", "mlp"),
                                           ("model", "cnn"), ("likelihood", "gaussian"),
                                           ("likelihood", "heteroscedastic")])
def test_a_prior_or_guide_option_holds_exactly_its_objects_arguments(group, option):
    """Config keys are constructor arguments (``_target_``): every key of the option is one, and the library's
    defaults are the option's."""
    import inspect

    from hydra.utils import get_object

    node = compose_train(f"{group}={option}", "data=toy_regression", "model=mlp")[group] if group == "likelihood" else \
        compose_train(f"{group}={option}")[group]
    parameters = inspect.signature(get_object(node._target_)).parameters
    keys = [key for key in node if key != "_target_"]
    assert set(keys) <= set(parameters)
    for key in keys:
        default = parameters[key].default
        recipe = (group, option) in (("prior", "fan_in"), ("model", "mlp"), ("model", "cnn"))  # chosen, not the default
        if default not in (inspect.Parameter.empty, None) and not recipe:
            assert node[key] == default, key


@pytest.mark.parametrize("group", ["model", "prior", "guide", "likelihood"])
def test_an_options_file_holds_every_argument_of_its_object_in_their_order(group):
    """The keys an option takes are read from its file without importing the library (app/option_keys.py): they
    must be its object's arguments, all of them."""
    from hydra.utils import get_object

    from pyro_bnn.app.option_keys import option_arguments, option_files

    assert option_files(group)
    for name, (target, keys) in option_files(group).items():
        assert list(keys) == option_arguments(get_object(target), group), name


def test_a_key_the_chosen_option_does_not_take_is_refused_naming_it_and_the_option_that_takes_it():
    with pytest.raises(ConfigError, match=r"^prior\.df=5: .*NormalPrior does not take it.*prior=student_t takes it"):
        validate(compose_train("prior=normal", "prior.df=5"))
    with pytest.raises(ConfigError, match=r"^guide\.rank=3: .*auto_normal does not take it.*guide=auto_lowrank takes"):
        validate(compose_train("guide=auto_normal", "guide.rank=3"))
    validate(compose_train("prior=student_t", "prior.df=5"))  # the option that takes it
    assert compose_train("prior=student_t", "prior.df=5").prior.df == 5


def test_a_family_sweep_is_a_sweep_over_the_prior_option():
    params = compose_train("+sweep=prior_family", hydra_node=True).hydra.sweeper.params
    assert params["prior"] == "normal,laplace,student_t"


@pytest.mark.parametrize("schema", [TrainConfig, EvaluateConfig, *(f.default_factory for f in dataclasses.fields(
    TrainConfig) if dataclasses.is_dataclass(f.default_factory))])
def test_the_schemas_hold_types_only(schema):
    """Every default lives in the YAML files: a schema default could silently disagree with them."""
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(f.default_factory):  # a group's own schema, checked on its own
            continue
        assert f.default == MISSING, f"{schema.__name__}.{f.name} has the default {f.default!r}"


@pytest.mark.parametrize("group", GROUPS + ["reference"])
def test_no_group_option_repeats_a_shared_default(group):
    """train.yaml holds the values shared by a group's options; an option states only what it changes."""
    shared = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "train.yaml")).get(group, {})  # interpolations unresolved
    for option in options(group):
        values = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{option}.yaml"))
        repeated = [k for k in values if k in shared and values[k] == shared[k]]
        assert not repeated, f"{group}/{option}.yaml repeats {repeated} of train.yaml"


def test_the_inference_group_changes_the_kl_estimator_and_nothing_else():
    """inference=trace against inference=mean_field: the same recipe, the Monte Carlo KL instead of the closed form."""
    def leaves(node, prefix=""):
        if isinstance(node, dict):
            return {k: v for key, value in node.items() for k, v in leaves(value, f"{prefix}{key}.").items()}
        return {prefix[:-1]: node}

    mean_field, trace = (leaves(OmegaConf.to_container(compose_train(f"inference={name}"), resolve=True))
                         for name in ("mean_field", "trace"))
    assert {k for k in mean_field.keys() | trace.keys() if mean_field.get(k) != trace.get(k)} == {"inference.elbo"}


def test_the_readmes_per_layer_example_holds_for_the_default_model():
    """README: prior.layer_scales={net.0:0.1,net.9:0.3} names layers of the default CNN (a name that is not refused)."""
    import re

    from helpers import ROOT
    from pyro_bnn.app.build import build

    example = re.search(r"`(prior\.layer_scales=\{[^`]*\})`", (ROOT / "docs" / "getting_started.md").read_text()).group(1)
    cfg = compose_train(example)
    validate(cfg)
    model, _ = build(cfg, {"task": "classification", "in_shape": (1, 8, 8), "num_outputs": 10, "num_data": 10})
    assert model.prior.layer_scales == {"net.0": 0.1, "net.9": 0.3}
