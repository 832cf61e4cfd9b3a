"""Objects from a config: the model (network, prior, likelihood) and guide of ``cfg``, or of a saved run."""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, NamedTuple, Tuple

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..checks import ArgumentError
from ..data.registry import load_data
from ..data.splits import DataSplits
from ..io.posterior import read_posterior, restore_posterior
from ..model.likelihoods import LIKELIHOOD_OF_TASK, Likelihood
from ..model.networks import BayesianModel
from ..objectives.elbo import ELBO_KL
from ..objectives.mean_field_elbo import MeanFieldELBO
from .option_keys import (
    OLD_SELECTORS,
    check_option_keys,
    group_target_names,
    option_arguments,
    option_files,
    yaml_text,
)
from .schema import OptionKeyError, layer_scales


def instantiate_option(node: DictConfig, group: str, *args, **given):
    """The library object of a group option (``cfg.model``, ``cfg.prior``, ...): :func:`hydra.utils.instantiate` of its
    ``_target_`` with its keys as the arguments and ``args`` / ``given`` as those the run gives in code
    (:data:`~pyro_bnn.app.option_keys.GIVEN`), once :func:`~pyro_bnn.app.option_keys.check_option_keys` has passed."""
    check_option_keys(node, group)
    try:
        return instantiate(node, *args, _convert_="all", **given)
    except InstantiationException as error:  # Hydra wraps the library's own error (ValueError, TypeError): raise that
        raise (error.__cause__ or error) from None


#: The ``model.*`` keys of the likelihood's arguments before the likelihood was a group of its own.
_OLD_LIKELIHOOD_KEYS = {"gaussian": {"scale": "noise_scale", "learn_scale": "learn_noise"},
                        "heteroscedastic": {"min_scale": "noise_floor"}}


def migrate_config(config: Dict[str, Any], task: str) -> Dict[str, Any]:
    """A run's saved config (``posterior.pt``'s, as a dict; ``task``: its data's) in today's format: a model, prior or
    guide saved by an earlier version (``model.name``, ``prior.family``, ``guide.name`` and every option's keys)
    becomes its ``_target_`` and the keys it takes, and the likelihood the model's keys described becomes the
    ``likelihood`` group's. Today's configs come back unchanged."""
    config = dict(config)
    old_model = dict(config.get("model", {}))
    for group, selector in OLD_SELECTORS.items():
        old = config.get(group)
        if isinstance(old, Mapping) and "_target_" not in old and selector in old:
            target = group_target_names(group)[old[selector]]
            taken = option_arguments(get_object(target), group)
            config[group] = {"_target_": target, **{key: value for key, value in old.items() if key in taken}}
    if "likelihood" not in config:
        name = old_model.get("likelihood", "gaussian") if task == "regression" else None
        config["likelihood"] = {} if name is None else {
            "_target_": group_target_names("likelihood")[name],
            **{argument: old_model[key] for argument, key in _OLD_LIKELIHOOD_KEYS[name].items() if key in old_model}}
    return config


def option_name(node: DictConfig) -> str:
    """The short name of a group option's library object (``auto_normal`` for ``pyro_bnn.guides.auto_normal``)."""
    return node._target_.rsplit(".", 1)[-1]


def build_prior(cfg: DictConfig):
    """The prior of ``cfg.prior`` (:func:`instantiate_option`; ``layer_scales`` joined into layer names)."""
    if "layer_scales" in cfg:
        cfg = OmegaConf.create({**OmegaConf.to_container(cfg), "layer_scales": layer_scales(cfg.layer_scales)})
    return instantiate_option(cfg, "prior")


def load_run_data(data_cfg: DictConfig) -> DataSplits:
    """The data of ``cfg.data`` (:func:`pyro_bnn.data.registry.load_data`; configs saved before ``data.loader`` existed
    name their loader ``data.name``)."""
    return load_data(data_cfg.get("loader", data_cfg.name), data_cfg.root, data_cfg.download, data_cfg.split_seed,
                     data_cfg.holdout_classes, data_cfg.subset, name=data_cfg.name, split=data_cfg.get("split", 0),
                     validation=data_cfg.get("validation", 0.0))


def build_likelihood(cfg: DictConfig, task: str) -> Likelihood:
    """The likelihood of ``cfg.likelihood`` (:func:`instantiate_option`) for data of ``task``; ``likelihood=auto`` (no
    ``_target_``): the task's own (:data:`~pyro_bnn.model.likelihoods.LIKELIHOOD_OF_TASK`). One of another task is
    refused."""
    default = LIKELIHOOD_OF_TASK[task]
    if "_target_" not in cfg:
        if cfg:  # likelihood=auto has no keys of its own
            key = next(iter(cfg))
            options = " or ".join(f"likelihood={name}" for name, (target, keys) in option_files("likelihood").items()
                                  if get_object(target).task == task and key in keys)
            raise OptionKeyError(f"likelihood.{key}={yaml_text(cfg[key])}: likelihood=auto (the data's own, "
                                 f"{default.__name__}) takes no keys; "
                                 + (f"choose the likelihood that takes it: {options}" if options else
                                    f"no {task} likelihood takes it"))
        return default()
    likelihood = instantiate_option(cfg, "likelihood")
    if likelihood.task != task:
        raise ValueError(f"likelihood: {cfg._target_} is a {likelihood.task} likelihood and the data are {task} data: "
                         f"leave likelihood unset (likelihood=auto: {default.__name__})")
    return likelihood


def build_model(cfg: DictConfig, spec: Dict[str, Any]) -> BayesianModel:
    """The Bayesian model of ``cfg.model`` (its network), ``cfg.likelihood`` and ``cfg.prior`` for data described by
    ``spec``."""
    likelihood = build_likelihood(cfg.likelihood, spec["task"])
    return instantiate_option(cfg.model, "model", tuple(spec["in_shape"]), likelihood.output_size(spec["num_outputs"]),
                              prior=build_prior(cfg.prior), likelihood=likelihood, num_data=spec["num_data"])


def build_guide(cfg: DictConfig, model: nn.Module) -> nn.Module:
    """The (not yet initialised) guide of ``cfg.guide`` for ``model`` (:func:`instantiate_option`)."""
    return instantiate_option(cfg, "guide", model)


def build(cfg: DictConfig, spec: Dict[str, Any], device: str = "cpu") -> Tuple[BayesianModel, nn.Module]:
    """Model and (not yet initialised) guide for ``cfg`` on ``device``."""
    model = build_model(cfg, spec).to(device)
    return model, build_guide(cfg.guide, model)


def posterior_from_file(path, device: str = "cpu") -> Tuple[BayesianModel, nn.Module, DictConfig, Dict[str, Any]]:
    """Rebuild ``(model, guide, config, data spec)`` of a run from its ``posterior.pt``."""
    blob = read_posterior(path, device)
    cfg = OmegaConf.create(migrate_config(blob["config"], blob["data"]["task"]))
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
    ``large_data.batch_size`` examples at ``large_data.lr`` instead (each where > 0). The batch size is the one the
    loader gives: at most ``num_train``."""
    rule = inference.large_data
    large = bool(rule.above) and num_train > rule.above
    steps = rule.steps if large and rule.steps else inference.steps
    lr = rule.lr if large and rule.lr else inference.lr
    rule_batch = rule.get("batch_size", 0)  # 0 in runs saved before the rule had a batch size
    batch_size = min(int(rule_batch if large and rule_batch else batch_size), num_train)  # the batches it gets
    per_epoch = math.ceil(num_train / batch_size)
    epochs = int(inference.epochs) if not steps else max(1, inference.min_epochs, math.ceil(steps / per_epoch))
    return RunSchedule(epochs, per_epoch, float(lr), large, batch_size)


def build_objective(inference: DictConfig) -> MeanFieldELBO:
    """The run's loss (:class:`~pyro_bnn.objectives.mean_field_elbo.MeanFieldELBO`) from ``inference``: ``elbo`` names its KL."""
    if inference.elbo not in ELBO_KL:
        raise ArgumentError("elbo", inference.elbo, joiner=" is ", fix=f"not known; choose one of {sorted(ELBO_KL)}")
    return MeanFieldELBO(inference.num_particles, ELBO_KL[inference.elbo], inference.estimator, inference.fused)
