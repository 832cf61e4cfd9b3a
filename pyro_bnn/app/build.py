"""Objects from a config: the model (network, prior, likelihood) and guide of ``cfg``, or of a saved run."""

from __future__ import annotations

import functools
import inspect
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Tuple

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..data.datasets import DataSplits, load_data
from ..guides import GUIDES
from ..io.posterior import read_posterior, restore_posterior
from ..model.likelihoods import REGRESSION_LIKELIHOODS, Categorical
from ..model.networks import BayesianCNN, BayesianMLP, BayesianModel
from ..model.priors import PRIOR_FAMILIES
from ..objectives.elbo import ELBO_KL
from ..objectives.mean_field_elbo import MeanFieldELBO
from ..training.schedules import KLWeight

#: The app's config groups: a folder inside the package, found by path (Hydra's ``pkg://`` would need an
#: ``__init__.py`` in it).
CONF_DIR = Path(__file__).resolve().parent / "conf"


def option_arguments(builder: Callable, options: Mapping[str, Any], group: str, choice: str, choices: Mapping[str, Callable],
                     selector: str) -> Dict[str, Any]:
    """The entries of ``options`` (a config group's keys, shared by all of its options) that ``builder`` takes: a
    group option's own keys are its builder's arguments, so adding an option never touches this module.

    A key the builder does not take, set to anything but the shared value of ``train.yaml``, is refused (a ValueError
    naming it, the option's keys and the options that take it): it would otherwise be dropped without a word.

    :param str choice: the chosen option (e.g. ``normal`` for ``prior.family=normal``); ``choices``: every option's
        builder; ``selector``: the key that chooses (not an argument).
    """
    parameters = inspect.signature(builder).parameters
    shared = _shared_values(group)
    for key, value in options.items():
        if key in parameters or key == selector or key not in shared or _same(value, shared[key]):
            continue
        takers = [name for name, other in choices.items() if key in inspect.signature(other).parameters]
        own = [name for name in parameters if name in shared]
        raise ValueError(f"{key}={value}: the {group} option {selector}={choice} does not take it (its keys: "
                         f"{', '.join(own)}); " + (" and ".join(f"{selector}={t}" for t in takers)
                                                   + (" take it" if len(takers) > 1 else " takes it")
                                                   if takers else f"no {group} option takes it") + "; leave it unset")
    return {key: value for key, value in options.items() if key in parameters}


@functools.lru_cache(maxsize=None)
def _train_yaml() -> DictConfig:
    """``conf/train.yaml``, read once per process."""
    return OmegaConf.load(CONF_DIR / "train.yaml")


def _shared_values(group: str) -> Dict[str, Any]:
    """The values ``train.yaml`` gives every option of ``group``."""
    return OmegaConf.to_container(_train_yaml()[group])


def _same(value, shared) -> bool:
    try:
        return value == shared or float(value) == float(shared)
    except (TypeError, ValueError):
        return False


def layer_scales(node) -> Dict[str, float]:
    """``prior.layer_scales`` as ``{layer name: scale}``: a dotted override (``prior.layer_scales.net.0=0.1``)
    arrives nested (``{net: {0: 0.1}}``) and is joined back into the layer's name."""
    flat: Dict[str, float] = {}
    for key, value in (node or {}).items():
        if isinstance(value, (dict, DictConfig)):
            flat.update({f"{key}.{name}": scale for name, scale in layer_scales(value).items()})
        else:
            flat[str(key)] = value
    return flat


def layer_scale_overrides(args: List[str]) -> List[str]:
    """The command line with every ``prior.layer_scales`` override as ``++`` (add or replace), so that
    ``prior.layer_scales={net.4:0.1}``, ``prior=layerwise prior.layer_scales={net.4:0.1}`` and
    ``prior.layer_scales.net.0=0.1`` work as a user expects (Hydra refuses new keys in a plain override)."""
    return ["++" + arg.lstrip("+") if arg.lstrip("+").startswith(("prior.layer_scales=", "prior.layer_scales."))
            else arg for arg in args]


def build_prior(cfg: DictConfig):
    """The prior of ``cfg.prior``: its family's class (:data:`~pyro_bnn.model.priors.PRIOR_FAMILIES`) given the keys it
    takes (``df`` for Student-t, the learned scales for Normal, ...)."""
    cls = PRIOR_FAMILIES[cfg.family]
    if cfg.get("learn_scale") and "learn_scale" not in inspect.signature(cls).parameters:
        raise ValueError(f"prior.learn_scale=true needs a prior whose scale can be learned (prior.family=normal), not "
                         f"prior.family={cfg.family}: use prior.family=normal, or prior.learn_scale=false")
    options = {**OmegaConf.to_container(cfg), "layer_scales": layer_scales(cfg.layer_scales)}
    return cls(**option_arguments(cls, options, "prior", cfg.family, PRIOR_FAMILIES, "family"))


def load_run_data(data_cfg: DictConfig) -> DataSplits:
    """The data of ``cfg.data`` (:func:`pyro_bnn.data.datasets.load_data`; configs saved before ``data.loader`` existed
    name their loader ``data.name``)."""
    return load_data(data_cfg.get("loader", data_cfg.name), data_cfg.root, data_cfg.download, data_cfg.split_seed,
                     data_cfg.holdout_classes, data_cfg.subset, name=data_cfg.name, split=data_cfg.get("split", 0),
                     validation=data_cfg.get("validation", 0.0))


#: The ``model.*`` config key of each regression likelihood argument (the config names them for the model they serve).
LIKELIHOOD_KEYS = {"scale": "noise_scale", "learn_scale": "learn_noise", "min_scale": "noise_floor"}


def build_likelihood(cfg: DictConfig, task: str):
    """The likelihood of ``cfg.model`` for a ``task``: categorical, or the regression likelihood it names."""
    if task == "classification":
        return Categorical()
    likelihood = REGRESSION_LIKELIHOODS[cfg.get("likelihood", "gaussian")]
    options = {argument: cfg[key] for argument, key in LIKELIHOOD_KEYS.items() if key in cfg}  # older configs: fewer
    parameters = inspect.signature(likelihood).parameters
    return likelihood(**{key: value for key, value in options.items() if key in parameters})


def build_model(cfg: DictConfig, spec: Dict[str, Any]) -> BayesianModel:
    """The Bayesian model of ``cfg.model`` and ``cfg.prior`` for data described by ``spec``."""
    likelihood = build_likelihood(cfg.model, spec["task"])
    bayesian = cfg.model.get("bayesian", "all")  # configs saved before model.bayesian existed: all
    common = dict(activation=cfg.model.activation, prior=build_prior(cfg.prior), likelihood=likelihood,
                  num_data=spec["num_data"], bayesian=list(bayesian) if OmegaConf.is_list(bayesian) else bayesian)
    return MODELS[cfg.model.name](cfg.model, spec, likelihood.output_size(spec["num_outputs"]), common)


def _mlp(cfg: DictConfig, spec: Dict[str, Any], num_outputs: int, common: Dict[str, Any]) -> BayesianModel:
    return BayesianMLP(spec["in_shape"], num_outputs, hidden=list(cfg.hidden), **common)


def _cnn(cfg: DictConfig, spec: Dict[str, Any], num_outputs: int, common: Dict[str, Any]) -> BayesianModel:
    return BayesianCNN(spec["in_shape"], num_outputs, channels=list(cfg.channels), kernel_size=cfg.kernel_size,
                       hidden=list(cfg.hidden), **common)


#: The network of each ``model.name``: ``(cfg.model, data spec, network outputs, common options) -> model``.
MODELS = {"mlp": _mlp, "cnn": _cnn}


def build_guide(cfg: DictConfig, model: nn.Module) -> nn.Module:
    """The (not yet initialised) guide of ``cfg.guide`` for ``model``: its builder
    (:data:`~pyro_bnn.guides.GUIDES`) given the keys it takes."""
    return GUIDES[cfg.name](model, **guide_options(cfg))


def guide_options(cfg: DictConfig) -> Dict[str, Any]:
    """The arguments of ``cfg.guide``'s builder (:data:`~pyro_bnn.guides.GUIDES`): the keys it takes (a key it does
    not take, set, is refused)."""
    return option_arguments(GUIDES[cfg.name], OmegaConf.to_container(cfg), "guide", cfg.name, GUIDES, "name")


def build(cfg: DictConfig, spec: Dict[str, Any], device: str = "cpu") -> Tuple[BayesianModel, nn.Module]:
    """Model and (not yet initialised) guide for ``cfg`` on ``device``."""
    model = build_model(cfg, spec).to(device)
    return model, build_guide(cfg.guide, model)


def posterior_from_file(path, device: str = "cpu") -> Tuple[BayesianModel, nn.Module, DictConfig, Dict[str, Any]]:
    """Rebuild ``(model, guide, config, data spec)`` of a run from its ``posterior.pt``."""
    blob = read_posterior(path, device)
    cfg = OmegaConf.create(blob["config"])
    model, guide = build(cfg, blob["data"], device)
    restore_posterior(blob, model, guide, device, source=str(path))
    return model, guide, cfg, blob["data"]


class RunSchedule(NamedTuple):
    """How long and how fast a run trains: ``epochs`` of ``steps_per_epoch`` optimizer steps of ``batch_size``
    examples at ``lr``, and whether the size rule (``inference.large_data``) chose them."""

    epochs: int
    steps_per_epoch: int
    lr: float
    large_data: bool
    batch_size: int


def training_schedule(inference: DictConfig, num_train: int, batch_size: int) -> RunSchedule:
    """The schedule of a run on ``num_train`` training examples: ``inference.epochs``, or with ``inference.steps`` > 0
    the fewest epochs of ``ceil(num_train / batch_size)`` steps each that make at least ``steps`` steps, and at least
    ``inference.min_epochs`` (training scaled to the data), at ``inference.lr``. The size rule: a training split of more
    than ``inference.large_data.above`` examples (where that is > 0) trains ``large_data.steps`` steps of
    ``large_data.batch_size`` examples at ``large_data.lr`` instead (each where > 0)."""
    rule = inference.large_data
    large = bool(rule.above) and num_train > rule.above
    steps = rule.steps if large and rule.steps else inference.steps
    lr = rule.lr if large and rule.lr else inference.lr
    rule_batch = rule.get("batch_size", 0)  # 0 in runs saved before the rule had a batch size
    batch_size = int(rule_batch if large and rule_batch else batch_size)
    per_epoch = math.ceil(num_train / batch_size)
    epochs = int(inference.epochs) if not steps else max(1, inference.min_epochs, math.ceil(steps / per_epoch))
    return RunSchedule(epochs, per_epoch, float(lr), large, batch_size)


def build_kl_weight(inference: DictConfig) -> KLWeight:
    """The run's KL weighting (:class:`~pyro_bnn.training.schedules.KLWeight`) from ``inference``."""
    fraction = inference.get("kl_warmup_fraction", 0.0)  # 0.0 in runs saved before the option
    return KLWeight(inference.kl_weight, inference.kl_warmup_epochs, inference.kl_schedule, fraction)


def build_objective(inference: DictConfig) -> MeanFieldELBO:
    """The run's loss (:class:`~pyro_bnn.objectives.mean_field_elbo.MeanFieldELBO`) from ``inference``: ``elbo`` names its KL."""
    if inference.elbo not in ELBO_KL:
        raise ValueError(f"elbo={inference.elbo!r} is not known; choose one of {sorted(ELBO_KL)}")
    return MeanFieldELBO(inference.num_particles, ELBO_KL[inference.elbo], inference.estimator, inference.fused)
