"""The validation of the Hydra app's configs (their schemas: :mod:`pyro_bnn.app.schema`).

The YAML files in ``conf/`` are merged into :class:`TrainConfig` (the ``train_schema`` entry of the defaults
list), so a wrong type or an unknown key fails while composing. The schemas hold types only (every value is ``MISSING``):
the defaults live in the YAML files alone (``conf/train.yaml`` and the groups). :func:`validate` then checks that values make sense
(``prior.scale=0``, ``inference.epochs=0``, an unknown family...) and raises one
:class:`ConfigError` naming the key and what is allowed, before any work starts: first :func:`check_values`, which
needs no torch (the rules below, the keys each option takes by :mod:`pyro_bnn.app.option_keys`, the options' values by
:mod:`pyro_bnn.options`, the schedule), so that the entry point refuses most bad configs at once; then the checks that
need the library (the objects built from the config: the objective, the prior, the likelihood; the data sets, OOD
sets and metrics there are).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Collection, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from ..checks import ArgumentError
from ..options import (
    MAX_SAMPLES,
    check_guide_options,
    check_likelihood_options,
    check_network_options,
    check_num_samples,
    check_prior_options,
)
from ..training.schedules import KLWeight, Schedule
from .option_keys import check_option_keys
from .schema import ConfigError, OptionKeyError, TrainConfig, layer_scales
from .tracking import check_tracker

#: Upper bounds where a larger value only exhausts memory or time: torch threads per run.
MAX_THREADS = 4 * (os.cpu_count() or 1)
REFERENCES = ("none", "nuts")
#: The torch-free checks of each group option's values (:mod:`pyro_bnn.options`): each takes the keys it knows.
OPTION_CHECKS = {"model": check_network_options, "prior": check_prior_options, "likelihood": check_likelihood_options,
                 "guide": check_guide_options}


def _one_of(options) -> Callable[[Any], bool]:
    return lambda v: v in options


_RULES = [
    ("data.split", lambda v: v >= 0, "an integer >= 0 (uci: the index of the benchmark's fixed split)"),
    ("data.validation", lambda v: 0 <= v < 1, "a share in [0, 1), e.g. 0.2 (0: score the test split)"),
    ("data.batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("data.test_batch_size", lambda v: v >= 1, "an integer >= 1"),
    ("data.subset", lambda v: v >= 0, "an integer >= 0 (0: the whole training split)"),
    ("data.split_seed", lambda v: v >= 0, "an integer >= 0"),
    ("data.holdout_classes", lambda v: all(isinstance(c, int) and c >= 0 for c in v), "a list of class indices >= 0"),
    ("inference.steps", lambda v: v >= 0, "an integer >= 0 (0: train inference.epochs epochs)"),
    ("inference.min_epochs", lambda v: v >= 0, "an integer >= 0 (with inference.steps: the fewest epochs)"),
    ("inference.large_data.above", lambda v: v >= 0, "an integer >= 0 (0: no size rule)"),
    ("inference.large_data.steps", lambda v: v >= 0, "an integer >= 0 (0: keep inference.steps)"),
    ("inference.large_data.lr", lambda v: v >= 0, "a number >= 0 (0: keep inference.lr)"),
    ("inference.large_data.batch_size", lambda v: v >= 0, "an integer >= 0 (0: keep data.batch_size)"),
    ("reference.method", _one_of(REFERENCES), f"one of {list(REFERENCES)}"),
    ("reference.num_samples", lambda v: 1 <= v <= MAX_SAMPLES, f"an integer from 1 to {MAX_SAMPLES}"),
    ("reference.warmup_steps", lambda v: v >= 1, "an integer >= 1"),
    ("reference.num_chains", lambda v: v >= 1, "an integer >= 1"),
    ("reference.max_tree_depth", lambda v: 1 <= v <= 12, "an integer from 1 to 12"),
    ("reference.target_accept_prob", lambda v: 0 < v < 1, "a number between 0 and 1, e.g. 0.8"),
    ("threads", lambda v: 0 <= v <= MAX_THREADS,
     f"an integer from 0 (torch's default) to {MAX_THREADS} (4 per core of this machine)"),
    ("seed", lambda v: 0 <= v < 2**32, "an integer from 0 to 2**32 - 1"),
    ("tracker.name", _one_of(["none", "mlflow"]), "tracker=none or tracker=mlflow (choose the group option)"),
]


#: The library checks :func:`validate` relies on (each rule is checked once, where the value is used) raise
#: :class:`~pyro_bnn.checks.ArgumentError`, which carries the argument's name; its config key is
#: ``<group>.<argument>`` (a group option's keys are its object's arguments). :func:`config_error` turns the error
#: into ``key=value is not allowed: fix``.
#: How a library error names the library's classes where the config names an option.
CONFIG_WORDS = {"a BayesianMLP": "model=mlp", "a BayesianCNN": "model=cnn"}


def _config_key(cfg: DictConfig, group: str, argument: str) -> Optional[str]:
    """The config key of the library's ``argument`` in ``group`` (None where the group has no such key)."""
    return f"{group}.{argument}" if argument in cfg[group] else None


def config_error(error: Exception, cfg: DictConfig, group: str) -> ConfigError:
    """The library's ``error`` about the values of ``cfg[group]`` in the config's words: ``key=value is not allowed:
    fix`` for an :class:`~pyro_bnn.checks.ArgumentError` of an argument the group has (the value as ``cfg`` holds it;
    the arguments its fix names as config keys too), else its message with :data:`CONFIG_WORDS`."""
    if isinstance(error, OptionKeyError):
        return ConfigError(str(error))
    key = _config_key(cfg, group, error.argument.split("[")[0]) if isinstance(error, ArgumentError) else None
    if key is None:
        message = str(error)
        for library, config in CONFIG_WORDS.items():
            message = message.replace(library, config)
        return ConfigError(message)
    value = _get(cfg, key)
    if key == "prior.layer_scales":
        value = layer_scales(value)  # as the prior reads it: {layer name: scale}, however it was given
    fix = re.sub(r"\b(\w+)=", lambda m: f"{_config_key(cfg, group, m[1]) or m[1]}=", error.fix)
    fix = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", fix.replace("choose one of", "use one of")))
    fix = _unquoted(fix)
    if error.joiner == ": " or fix.startswith("not known"):
        return ConfigError(f"{key}={value} is not allowed: {fix.removeprefix('not known; ')}")
    return ConfigError(f"{key}={value}{error.joiner}{fix}")


def _unquoted(text: str) -> str:
    """``text`` with each quoted word outside brackets unquoted, as YAML writes a string (lists stay as they are)."""
    parts, depth = [], 0
    for piece in re.split(r"([\[\]])", text):
        depth += piece == "["
        depth -= piece == "]"
        parts.append(piece if depth else re.sub(r"'(\w+)'", r"\1", piece))
    return "".join(parts)


@contextmanager
def library_errors(cfg: DictConfig, group: str) -> Iterator[None]:
    """Turn the library's errors about the values of ``cfg[group]`` raised inside into the config's
    (:func:`config_error`)."""
    try:
        yield
    except (ValueError, TypeError) as error:
        raise config_error(error, cfg, group) from None


def _get(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _unknown_keys(cfg: DictConfig, schema, prefix: str = "") -> List[Tuple[str, List[str]]]:
    """Keys of ``cfg`` that ``schema`` does not have (added with ``+``), each with the schema's keys beside it."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown = []
    for key in cfg:
        if key not in fields:
            unknown.append((f"{prefix}{key}", [f"{prefix}{name}" for name in fields]))
        elif dataclasses.is_dataclass(fields[key].default_factory):
            unknown += _unknown_keys(cfg[key], fields[key].default_factory, f"{prefix}{key}.")
    return unknown


def build_kl_weight(inference: DictConfig) -> KLWeight:
    """The run's KL weighting (:class:`~pyro_bnn.training.schedules.KLWeight`) from ``inference``."""
    fraction = inference.get("kl_warmup_fraction", 0.0)  # 0.0 in runs saved before the option
    return KLWeight(inference.kl_weight, inference.kl_warmup_epochs, inference.kl_schedule, fraction)


def override_keys(overrides: Iterable[str]) -> Set[str]:
    """The keys a command line's ``overrides`` set (``++prior.df=3``: ``prior.df``; ``+experiment=uci``:
    ``experiment``)."""
    return {override.split("=", 1)[0].lstrip("+~") for override in overrides}


def objective_value(cfg: DictConfig, metrics: Dict[str, Any]):
    """What a job returns to its sweeper: the ``objective`` metric of ``metrics`` (a float, for sweepers such as
    Optuna), or all of them where there is none."""
    if not cfg.objective:
        return metrics
    section, name = cfg.objective.split(".")
    return float(metrics[section][name])


def validate(cfg: DictConfig, given: Collection[str] = ()) -> None:
    """Raise :class:`ConfigError` for the first key or value of ``cfg`` that makes no sense: :func:`check_values`,
    then the checks that need the library (it imports torch)."""
    check_values(cfg, given)
    _check_with_the_library(cfg)


def check_values(cfg: DictConfig, given: Collection[str] = ()) -> None:
    """Raise :class:`ConfigError` for the first key or value of ``cfg`` that makes no sense by itself or beside the
    others, without importing torch: the keys of the schema, :data:`_RULES`, the keys each group option takes and
    their values (:data:`OPTION_CHECKS`), the schedule and the combinations of values.

    :param given: the keys the command line set (:func:`override_keys`): a key given that the others make unused
        is refused, where its default would be left alone.
    """
    try:
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation once (a UCI data set's n_hidden.txt)
    except InterpolationResolutionError as err:  # OmegaConf's text: "<Error> raised while resolving ...: <message>"
        raise ConfigError(str(err).splitlines()[0].split("raised while resolving interpolation: ")[-1]) from None
    for key, known in _unknown_keys(cfg, TrainConfig):
        close = difflib.get_close_matches(key, known, n=1)
        raise ConfigError(f"+{key} is not a key of the config: "
                          + (f"did you mean {close[0]}? (no +: {close[0]}=...)" if close else
                             "see `python -m pyro_bnn.train --cfg job` for the keys there are"))
    for key, ok, allowed in _RULES:
        value = _get(cfg, key)
        if not ok(value):
            raise ConfigError(f"{key}={value} is not allowed: use {allowed}")
    check_device_name(cfg.device)
    check_tracker(cfg)
    inference = cfg.inference
    with library_errors(cfg, "inference"):
        kl_weight = build_kl_weight(inference)
        if not inference.steps:  # with steps, the epochs (and the warm-up's check) wait for the data's size
            Schedule(inference.epochs, inference.lr, inference.lr_schedule, kl_weight)
    for group, check in OPTION_CHECKS.items():
        with library_errors(cfg, group):
            if "_target_" in cfg[group]:  # likelihood=auto names none (its keys: build_likelihood)
                check_option_keys(cfg[group], group)
            check(**_option_values(cfg[group], check))
    with library_errors(cfg, "eval"):
        check_num_samples(cfg.eval.num_samples)
    _check_combinations(cfg, given)


def _option_values(node: DictConfig, check: Callable) -> Dict[str, Any]:
    """The values of a group option ``node`` that ``check`` (one of :data:`OPTION_CHECKS`) takes, as plain values
    (``layer_scales`` joined into layer names; the keys the option does not take were refused by
    :func:`~pyro_bnn.app.option_keys.check_option_keys`)."""
    taken = inspect.signature(check).parameters
    values = {key: node[key] for key in node if key in taken}
    if "layer_scales" in values:
        values["layer_scales"] = layer_scales(values["layer_scales"])
    return {key: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for key, v in values.items()}


def _check_with_the_library(cfg: DictConfig) -> None:
    """The checks that need the library, in the config's words (:func:`library_errors`): the objects the run builds
    from the config, and the values the library's registries allow."""
    from ..data.ood import OOD_SETS
    from ..data.registry import DATASETS
    from ..data.uci import check_split
    from ..model.likelihoods import Categorical, Regression
    from .build import build_likelihood, build_objective, build_prior

    rules = [
        ("data.loader", DATASETS, f"one of {list(DATASETS)} (data=<one of them>; a UCI data set: data=uci "
                                  "data.name=<its folder under data.root>)"),
        ("data.ood", OOD_SETS, f"one of {list(OOD_SETS)}"),
    ]
    for key, allowed, words in rules:
        if _get(cfg, key) not in allowed:
            raise ConfigError(f"{key}={_get(cfg, key)} is not allowed: use {words}")
    # The metrics a job can return to a sweeper (objective=), as <section>.<name> of metrics.json.
    regression_objectives = tuple(f"test.{name}" for name in Regression.metric_names)
    classification_objectives = tuple(f"test.{name}" for name in
                                      Categorical.metric_names + Categorical.ood_metric_names)
    objectives = classification_objectives + regression_objectives + ("train.loss", "train.nll", "train.kl")
    if cfg.objective is not None and cfg.objective not in objectives:
        raise ConfigError(f"objective={cfg.objective} is not allowed: use null or one of {list(objectives)}")
    regression = DATASETS[cfg.data.loader].task == "regression"
    other_task = classification_objectives if regression else regression_objectives
    no_ood = cfg.data.ood == "none" and cfg.objective is not None and cfg.objective.startswith("test.ood_")
    if cfg.objective in other_task or no_ood:
        allowed = [o for o in objectives if o not in other_task and not (cfg.data.ood == "none" and "ood_" in o)]
        raise ConfigError(f"objective={cfg.objective} is not a metric of this run (data={cfg.data.name}, "
                          f"data.ood={cfg.data.ood}): use one of {allowed}")
    validate_device(cfg.device)
    with library_errors(cfg, "inference"):
        build_objective(cfg.inference)
    with library_errors(cfg, "prior"):
        build_prior(cfg.prior)
    with library_errors(cfg, "likelihood"):
        build_likelihood(cfg.likelihood, DATASETS[cfg.data.loader].task)
    if cfg.data.loader == "uci" and (Path(cfg.data.root) / cfg.data.name / "data").is_dir():
        with library_errors(cfg, "data"):  # a sweep over data.split is refused before its first job
            check_split(cfg.data.name, cfg.data.split, cfg.data.root)
    if regression and (cfg.data.ood != "none" or cfg.data.holdout_classes):
        raise ConfigError("data.ood and data.holdout_classes are for classification: "
                          f"use data.ood=none data.holdout_classes=[] with data={cfg.data.loader}")


def _check_combinations(cfg: DictConfig, given: Collection[str]) -> None:
    """Values fine alone that make no sense together."""
    bayesian = cfg.model.get("bayesian", "all")
    if not (bayesian in ("all", "last") or OmegaConf.is_list(bayesian) and all(isinstance(b, str) for b in bayesian)):
        shown = OmegaConf.to_container(bayesian) if OmegaConf.is_config(bayesian) else bayesian
        raise ConfigError(f"model.bayesian={shown} is not allowed: use all, last (the last Linear layer) or a list of "
                          "layer names, e.g. [net.7,net.9] (the others keep point estimates)")
    if cfg.inference.min_epochs and not cfg.inference.steps:
        raise ConfigError(f"inference.min_epochs={cfg.inference.min_epochs} is the fewest epochs of a run scaled by "
                          f"inference.steps, and steps=0 (the run trains inference.epochs={cfg.inference.epochs}): set "
                          "inference.steps > 0, or leave inference.min_epochs 0")
    if cfg.inference.steps and "inference.epochs" in given:
        raise ConfigError(f"inference.epochs={cfg.inference.epochs} is not used: inference.steps={cfg.inference.steps} "
                          "sets the run's length (epochs = ceil(steps / batches per epoch)); leave inference.epochs "
                          "unset, or set inference.steps=0 to train inference.epochs epochs")
    widest = max([cfg.prior.scale, *layer_scales(cfg.prior.get("layer_scales")).values()])
    if "init_scale" in cfg.guide and cfg.guide.init_scale > widest:
        raise ConfigError(f"guide.init_scale={cfg.guide.init_scale} is wider than the prior (prior.scale={widest}): "
                          "start the posterior narrower than the prior, e.g. guide.init_scale=1e-3")
    if cfg.data.ood == "heldout" and not cfg.data.holdout_classes:
        raise ConfigError("data.ood=heldout needs classes to hold out of training: set data.holdout_classes, e.g. [8,9]")


def check_device_name(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N``."""
    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ConfigError(f"device={device} is not allowed: use cpu, cuda or cuda:N")


def validate_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N`` (:func:`check_device_name`), and CUDA only where it is available."""
    import torch

    check_device_name(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device} was asked for but CUDA is not available here: use device=cpu")
