"""The shape of the app's configs, importable without the library (a command that only composes or prints a
config starts without torch): where the config groups are (:data:`CONF_DIR`), the structured schemas registered in
Hydra's ConfigStore (types only: every default lives in the YAML files), the ``uci_hidden`` resolver, the errors a
config check raises, the groups whose options are library objects, and how ``prior.layer_scales`` reads
(:func:`layer_scales`).

The YAML files in ``conf/`` are merged into :class:`TrainConfig` (the ``train_schema`` entry of the defaults
list), so a wrong type or an unknown key fails while composing; :func:`pyro_bnn.app.config.validate` checks
the values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

#: The app's config groups: a folder inside the package, found by path (Hydra's ``pkg://`` would need an
#: ``__init__.py`` in it).
CONF_DIR = Path(__file__).resolve().parent / "conf"
#: The groups whose options are library objects (:func:`pyro_bnn.app.build.instantiate_option`): their keys differ
#: from option to option.
INSTANTIATED_GROUPS = ("model", "likelihood", "prior", "guide")


def option_key_overrides(args: List[str]) -> List[str]:
    """The command line with every override of a key of :data:`INSTANTIATED_GROUPS` as ``++`` (add or replace): a key
    the chosen option does not have (``prior=normal prior.df=5``) then reaches the check of its object's arguments,
    which refuses it in one line naming it, and ``prior.layer_scales={net.4:0.1}`` or ``prior.layer_scales.net.0=0.1``
    add layers (Hydra refuses new keys in a plain override and advises ``+``, which a key of another option would
    need)."""
    return ["++" + arg.lstrip("+") if arg.lstrip("+").startswith(tuple(f"{group}." for group in INSTANTIATED_GROUPS))
            else arg for arg in args]


class ConfigError(ValueError):
    """A config value that makes no sense; the message names the key and what is allowed."""


class OptionKeyError(ValueError):
    """A config key the chosen group option's library object does not take (the message names it and the fix)."""


@dataclass
class DataConfig:
    loader: str = MISSING
    name: str = MISSING
    split: int = MISSING
    validation: float = MISSING
    root: str = MISSING
    download: bool = MISSING
    split_seed: int = MISSING
    batch_size: int = MISSING
    test_batch_size: int = MISSING
    subset: int = MISSING
    ood: str = MISSING
    holdout_classes: List[int] = MISSING


@dataclass
class LargeDataConfig:
    above: int = MISSING
    steps: int = MISSING
    lr: float = MISSING
    batch_size: int = MISSING


@dataclass
class InferenceConfig:
    elbo: str = MISSING
    lr: float = MISSING
    epochs: int = MISSING
    steps: int = MISSING
    min_epochs: int = MISSING
    num_particles: int = MISSING
    kl_weight: float = MISSING
    kl_warmup_epochs: int = MISSING
    kl_warmup_fraction: float = MISSING
    kl_schedule: str = MISSING
    lr_schedule: str = MISSING
    estimator: str = MISSING
    fused: Any = MISSING
    large_data: LargeDataConfig = field(default_factory=LargeDataConfig)


@dataclass
class EvalConfig:
    num_samples: int = MISSING


@dataclass
class ReferenceConfig:
    method: str = MISSING
    num_samples: int = MISSING
    warmup_steps: int = MISSING
    num_chains: int = MISSING
    max_tree_depth: int = MISSING
    target_accept_prob: float = MISSING


@dataclass
class TrackerConfig:
    name: str = MISSING
    uri: Optional[str] = MISSING
    experiment: Optional[str] = MISSING


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = MISSING  # library objects' arguments (_target_): pyro_bnn.app.build.instantiate_option checks them
    likelihood: Any = MISSING
    prior: Any = MISSING
    guide: Any = MISSING
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    seed: int = MISSING
    device: str = MISSING
    threads: int = MISSING
    resume: bool = MISSING
    progress: bool = MISSING
    tensorboard: bool = MISSING
    objective: Optional[str] = MISSING


@dataclass
class EvaluateConfig:
    run_dir: str = MISSING
    dataset: Optional[str] = MISSING
    num_samples: Optional[int] = MISSING
    seed: Optional[int] = MISSING
    device: str = MISSING




def register_configs() -> None:
    """Register the schemas named in ``conf/train.yaml`` and ``conf/evaluate.yaml``, and the resolver ``uci_hidden``."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    # ${uci_hidden:<root>,<name>}: the benchmark network's hidden layer of a UCI data set, [n_hidden.txt's units]
    OmegaConf.register_new_resolver("uci_hidden", _uci_hidden, replace=True)


def _uci_hidden(root, name) -> list:
    from ..data.uci import uci_hidden_units  # imported when a config resolves it, not when a command starts

    return [uci_hidden_units(str(name), str(root))]


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
