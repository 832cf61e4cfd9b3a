import dataclasses
import re

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import ValidationError

from helpers import cli, compose_train
from pyro_bnn.app.build import build_prior
from pyro_bnn.app.config import CONF_DIR, ConfigError, EvaluateConfig, TrainConfig, validate
from pyro_bnn.app.train import train

GROUPS = ["data", "model", "prior", "guide", "inference", "eval"]


def options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_every_group_has_options():
    assert options("data") == ["cifar10", "digits", "fashion_mnist", "mnist", "toy_regression", "uci"]
    assert options("model") == ["cnn", "mlp"]
    assert {"normal", "layerwise", "fan_in"} <= set(options("prior"))
    assert options("guide") == ["auto_delta", "auto_lowrank", "auto_normal"]


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_of_every_group_composes_and_validates(group, option):
    overrides = [f"{group}={option}"]
    if option in ("toy_regression", "uci"):
        overrides.append("model=mlp")
    cfg = compose_train(*overrides)
    validate(cfg)
    if group in ("model", "guide"):
        assert cfg[group].name == option
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
    assert (cfg.data.name, cfg.model.name, cfg.guide.name, cfg.inference.elbo) == ("digits", "cnn", "auto_normal",
                                                                                    "mean_field")
    assert cfg.inference.kl_weight == 0.03 and cfg.inference.kl_warmup_epochs == 0  # tempered: README says so
    # the recipe of benchmarks/results/*-ood_baselines.txt
    assert (list(cfg.model.channels), list(cfg.model.hidden), cfg.model.activation) == ([24, 48], [64], "gelu")
    assert (cfg.inference.estimator, cfg.inference.lr, cfg.inference.epochs) == ("dense_local_reparameterization", 0.01, 60)


@pytest.mark.parametrize("experiment", ["digits_mlp", "toy_regression", "nuts_toy_regression", "nuts_digits"])
def test_presets_compared_with_exact_posteriors_optimise_the_exact_elbo(experiment):
    inference = compose_train(f"+experiment={experiment}").inference
    assert (inference.kl_weight, inference.estimator) == (1.0, "shared")  # as their README figures were measured


@pytest.mark.parametrize("overrides, message", [
    (["prior.learn_scale=true", "prior.family=laplace"], "prior.learn_scale=true needs a prior whose scale can be learned"),
    (["prior.hyperprior_alpha=3"], "prior.hyperprior_alpha=3.0 is a hyperprior on learned scales: set prior.learn_scale=true"),
    (["prior=empirical_bayes", "prior.hyperprior_alpha=-1"], "prior.hyperprior_alpha=-1.0 is not allowed"),
])
def test_learned_prior_scales_are_checked_before_any_work(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(compose_train(*overrides))


def test_a_learned_prior_scale_with_a_guide_that_cannot_set_it_is_refused_before_training(tmp_path):
    """The library's rule (fit refuses it), reached through the app: nothing trained, nothing written."""
    cfg = compose_train("+experiment=debug", "prior.learn_scale=true", "guide=auto_delta")
    with pytest.raises(ValueError, match="learned prior scales .* mean-field Normal guide, not a AutoDelta: use "
                                         "guide=auto_normal, or prior.learn_scale=false"):
        train(cfg, tmp_path)
    assert not (tmp_path / "history.csv").exists() and not (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("override, message", [
    ("prior.scale=0", "prior.scale=0.0 is not allowed: use a finite number > 0"),
    ("inference.epochs=0", "inference.epochs=0 is not allowed: use an integer >= 1"),
    ("inference.lr=-0.1", "inference.lr=-0.1 is not allowed"),
    ("inference.elbo=tracemeanfield", "inference.elbo=tracemeanfield is not allowed: use one of ['mean_field', 'trace']"),
    ("prior.family=cauchy", "prior.family=cauchy is not allowed: use one of"),
    ("guide.init_scale=0", "guide.init_scale=0.0 is not allowed"),
    ("guide.init_loc=xavier", "guide.init_loc=xavier is not allowed: use one of ['pytorch', 'median']"),
    ("model.kernel_size=4", "model.kernel_size=4 is not allowed: use an odd integer"),
    ("model.hidden=[0]", "model.hidden=[0] is not allowed"),
    ("data.batch_size=0", "data.batch_size=0 is not allowed"),
    ("eval.num_samples=0", "eval.num_samples=0 is not allowed"),
    ("inference.kl_weight=-1", "inference.kl_weight=-1.0 is not allowed"),
    ("device=tpu", "device=tpu is not allowed: use cpu, cuda or cuda:N"),
    ("objective=test.speed", "objective=test.speed is not allowed: use null or one of"),
    ("inference.lr_schedule=step", "inference.lr_schedule=step is not allowed: use one of ['constant', 'cosine']"),
    ("data.ood=svhn", "data.ood=svhn is not allowed: use one of ['none', 'rotated', 'heldout', 'mnist', 'fashion_mnist']"),
    ("data.ood=heldout", "data.ood=heldout needs classes to hold out of training: set data.holdout_classes"),
    ("data.holdout_classes=[-1]", "data.holdout_classes=[-1] is not allowed: use a list of class indices >= 0"),
    ("data.subset=-5", "data.subset=-5 is not allowed"),
    ("reference.method=hmc", "reference.method=hmc is not allowed: use one of ['none', 'nuts']"),
    ("reference.max_tree_depth=20", "reference.max_tree_depth=20 is not allowed: use an integer from 1"),
    ("inference.fused=sometimes", "inference.fused=sometimes is not allowed: use auto, true or false"),
    ("inference.fused=1", "inference.fused=1 is not allowed: use auto, true or false"),
])
def test_nonsense_values_get_one_line_naming_the_key(override, message):
    cfg = compose_train(*override.split())
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_cnn_on_tabular_data_gets_the_models_error_in_the_configs_words(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("model=cnn needs image inputs of shape (C, H, W), not in_shape=(1,): "
                                                    "use model=mlp for tabular data")):
        train(compose_train("+experiment=debug", "data=toy_regression"), tmp_path)
    assert not (tmp_path / "history.csv").exists()


def test_a_negative_layer_scale_is_named():
    cfg = compose_train("prior=layerwise")
    cfg.prior.layer_scales["net.0"] = -1.0
    with pytest.raises(ConfigError, match=r"prior.layer_scales=\{'net.0': -1.0\} is not allowed"):
        validate(cfg)


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
    ("prior.scale=big", ValidationError),
    ("prior.scal=1", ConfigCompositionException),
    ("model=resnet", ConfigCompositionException),
])
def test_wrong_types_unknown_keys_and_options_fail_while_composing(override, error):
    with pytest.raises((error, ConfigCompositionException)):
        compose_train(override)


@pytest.mark.parametrize("override, reason", [
    ("guide=auto_delta", "the guide is a AutoDelta, not the mean-field Normal"),
    ("prior=laplace", "the prior of net.0.weight is not a Normal"),
])
def test_fused_true_says_why_the_pair_cannot_be_fused_before_training(tmp_path, override, reason):
    with pytest.raises(ValueError, match=f"fused=True: the fused mean-field step cannot train this pair: {reason}"):
        train(compose_train("+experiment=debug", "inference.fused=true", override), tmp_path)
    assert not (tmp_path / "history.csv").exists() and not (tmp_path / "checkpoint.pt").exists()


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
