"""What a finished run measured and how ``metrics.json`` records it: :class:`Scored` (the test predictive),
:class:`RunRecord` (the run), :func:`run_metrics` (the file's content) and :func:`run_environment` (where it ran)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import pyro
import torch
import torch.distributed as dist
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from ..data.splits import DataSplits
from ..objectives.empirical_bayes import prior_scales
from ..training.distributed import world
from ..training.schedules import KLWeight
from .build import RunSchedule
from .report import uncertainty_summary


@dataclass
class Scored:
    """The test predictive of a trained posterior.

    :ivar metrics: its test metrics (and OOD scores), :func:`~pyro_bnn.evaluation.predictive.score`'s.
    :ivar samples: the weight draws behind them (``eval.num_samples`` per site).
    :ivar raw: the network's ``outputs`` under each draw, the ``targets`` (and ``ood_outputs``).
    :ivar loader: the test loader.
    :ivar curve: 1-D inputs: the predictive over an even grid of them (:func:`~pyro_bnn.app.report.regression_curve`),
        which the figure, the ``uncertainty`` metrics and the NUTS comparison read; None otherwise.
    """

    metrics: Dict[str, float]
    samples: Dict[str, torch.Tensor]
    raw: Dict[str, torch.Tensor]
    loader: DataLoader
    curve: Optional[Dict[str, torch.Tensor]] = None


@dataclass
class RunRecord:
    """What a finished run measured, for ``metrics.json`` (:func:`run_metrics`)."""

    history: List[Dict[str, float]]
    data: DataSplits
    model: Any
    scored: Scored
    health: Dict[str, Any]
    kl_weight: KLWeight
    environment: Dict[str, Any]
    schedule: RunSchedule
    fit_s: float
    time_s: float


def run_metrics(cfg: DictConfig, run: RunRecord, reference: Optional[Dict] = None) -> Dict[str, Any]:
    """The content of ``metrics.json``, all of it computed here; regression metrics of standardised targets in the
    original units under ``test``, as computed under ``test_standardised``."""
    history, data, test, health, epochs = run.history, run.data, run.scored.metrics, run.health, run.schedule.epochs
    last = history[-1]
    standardised = data.target_std != 1.0
    extra = uncertainty_summary(run.scored, data)
    learned_scales = prior_scales(run.model)
    metrics = {
        "test": run.model.likelihood.in_original_units(test, data.target_std),
        **({"test_standardised": test} if standardised else {}),
        "data": {"loader": data.loader, "name": data.name, "split": data.split, "num_train": data.num_train,
                 "num_test": len(data.test), **({"target_mean": data.target_mean, "target_std": data.target_std}
                                                if standardised else {})},
        "train": {"loss": last["loss"], "nll": last["nll"], "kl": last["kl"],
                  "kl_layers": {k[3:]: v for k, v in last.items() if k.startswith("kl.")},
                  "num_data": data.num_train, "loss_per_example": last["loss"] / data.num_train},
        **({"uncertainty": extra} if extra else {}),
        **({"posterior_health": health} if health else {}),
        **({"prior_scales": learned_scales} if learned_scales else {}),
        "exact_elbo": run.kl_weight.is_exact_elbo(epochs),
        "kl_weight": cfg.inference.kl_weight,
        "kl_weight_used": {"first_epoch": history[0]["kl_weight"], "last_epoch": last["kl_weight"],
                           "warmup_epochs": run.kl_weight.warmup_epochs,
                           "warmup_finished": epochs >= run.kl_weight.warmup_epochs},
        "environment": run.environment,
        "time_s": run.time_s,
        "fit_time_s": run.fit_s,
        "epochs": epochs,
        "schedule": {"steps": epochs * run.schedule.steps_per_epoch, "lr": run.schedule.lr,
                     "batch_size": run.schedule.batch_size, "large_data": run.schedule.large_data},
        "seed": cfg.seed,
        "layers": run.model.layer_record(),
    }
    if reference is not None:
        metrics["reference"] = {"nuts_test": reference["nuts"], "nuts_seconds": reference["nuts_diagnostics"]["seconds"]}
    return metrics


def run_environment(cfg: DictConfig) -> Dict[str, Any]:
    """Where and how a run ran: processes, backend, device, threads, the versions of torch, pyro and pyro_bnn, and the
    git commit of a checkout (None elsewhere)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        own_version = version("pyro_bnn")
    except PackageNotFoundError:
        own_version = None
    return {"world_size": world()[1], "backend": dist.get_backend() if dist.is_initialized() else None,
            "device": run_device(cfg.device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "pyro": pyro.__version__, "pyro_bnn": own_version, "git_commit": _git_commit()}


def _git_commit() -> Optional[str]:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None




def run_device(device: str) -> str:
    """``device``; ``cuda`` in a data-parallel run: each process its own GPU (torchrun's LOCAL_RANK)."""
    if device == "cuda" and world()[1] > 1:
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device
