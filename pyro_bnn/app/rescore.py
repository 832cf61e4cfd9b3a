"""Score a saved run's posterior again (:func:`evaluate_run`), the work of ``python -m pyro_bnn.app.evaluate``
(:mod:`pyro_bnn.app.evaluate`, which imports this module, and the library, only once its arguments have passed)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pyro
import torch
from omegaconf import OmegaConf

from ..data.loaders import make_loader
from ..data.ood import load_ood
from ..data.registry import DATASETS, load_data
from ..evaluation.predictive import evaluate
from .build import load_run_data, posterior_from_file
from .config import validate_device
from .run_dir import write_json
from .schema import ConfigError


def evaluate_run(run_dir, dataset: str = None, num_samples: int = None, seed: int = None, device: str = "cpu") -> Dict:
    """Metrics of the posterior saved in ``run_dir`` on the test split of ``dataset`` (default: the run's), on the
    run's own torch threads (its ``threads``: one by default, as it trained; 0: torch's default)."""
    validate_device(device)
    run_dir = Path(run_dir)
    model, guide, cfg, spec = posterior_from_file(run_dir / "posterior.pt", device)
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    name = dataset or spec["name"]
    own = name == spec["name"]
    if not own and DATASETS.get(name) is DATASETS["uci"]:
        raise ConfigError(f"dataset={name}: evaluate scores a run on another data set by its data= name, and a UCI data "
                          "set other than the run's own is not one (it needs a name and a split): leave dataset unset "
                          "for the run's own test split")
    if not own and name not in DATASETS:
        raise ConfigError(f"dataset={name} is not known: use one of {list(DATASETS)} (or leave dataset unset: the "
                          "run's own test split)")
    try:
        splits = (load_run_data(OmegaConf.merge(cfg.data, {"download": False})) if own else
                  load_data(name, cfg.data.root, False, cfg.data.split_seed, []))
    except FileNotFoundError as err:
        if own:
            raise FileNotFoundError(f"{str(err).split(';')[0].split(': set ')[0]}; evaluate reads the run's own data "
                                    f"under its data.root ({cfg.data.root}, from its posterior.pt): put the data set "
                                    "back there") from None
        raise FileNotFoundError(f"{str(err).split(';')[0]}; evaluate reads it under the run's data.root: fetch it "
                                f"there first, e.g. python -m pyro_bnn.train data={name} data.download=true") from None
    if tuple(splits.in_shape) != tuple(spec["in_shape"]) or splits.task != spec["task"]:
        raise ConfigError(
            f"dataset={name} has {splits.task} inputs of shape {tuple(splits.in_shape)}, but the run was trained on "
            f"{spec['task']} inputs of shape {tuple(spec['in_shape'])}: pick a data set of the same shape"
        )
    ood = load_ood(splits, cfg.data.ood, cfg.data.root, False) if own else None
    pyro.set_rng_seed(cfg.seed if seed is None else seed)
    metrics = evaluate(model, guide, make_loader(splits.test, cfg.data.test_batch_size),
                       cfg.eval.num_samples if num_samples is None else num_samples,
                       make_loader(ood, cfg.data.test_batch_size) if ood is not None else None)
    standardised = {"test_standardised": metrics} if splits.target_std != 1 else {}  # as metrics.json nests them
    metrics = model.likelihood.in_original_units(metrics, splits.target_std)
    write_json(run_dir / f"evaluation_{name}.json", {"data": name, "test": metrics, **standardised})
    return metrics


__all__ = ["evaluate_run"]
