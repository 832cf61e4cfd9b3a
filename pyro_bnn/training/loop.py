"""Training: :func:`fit`, a loop of SVI steps over epochs, with checkpoints, stop requests and callbacks.

Each step (:class:`~pyro_bnn.training.step.SVIStep`) draws the weights from the guide, computes the ELBO terms of the minibatch
(:class:`~pyro_bnn.objectives.mean_field_elbo.MeanFieldELBO`: ``TraceMeanField_ELBO``'s estimate, or with ``kl="mc"``
``Trace_ELBO``'s; the estimator of :mod:`pyro_bnn.objectives.estimators` decides how the layers draw their noise) and takes one
fused Adam step over all guide (and point-estimate) parameters together. ``loss = NLL + beta_step * KL``, beta from
the schedule's :class:`~pyro_bnn.training.schedules.KLWeight` (1 by default: the exact -ELBO).

The loss terms stay on the device and are checked every few steps (:mod:`pyro_bnn.training.loss_monitor`);
the run's position and random state live in a :class:`~pyro_bnn.training.state.TrainingState`
(checkpoints, resume); ``distributed=True`` trains on the ranks of a process group
(:mod:`pyro_bnn.training.distributed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional

import pyro
from torch import nn

from ..batch_checks import check_batch, check_loader
from ..objectives.empirical_bayes import prior_scales
from ..objectives.mean_field_elbo import MeanFieldELBO
from .distributed import shard_rows
from .schedules import KLWeight, Schedule
from .state import TrainingState
from .step import SVIStep


class TrainingInterrupted(Exception):
    """Raised by :func:`fit` at a step boundary once ``should_stop()`` is true, after the checkpoint."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"interrupted at epoch {epoch + 1}, after step {step}")
        self.epoch, self.step = epoch, step


@dataclass(frozen=True)
class Hooks:
    """What :func:`fit` calls while it trains.

    :param callback: called with each epoch's record.
    :param on_checkpoint: called with the training state (plain tensors and numbers, for ``torch.save``) at the end
        of every epoch and when stopping.
    :param should_stop: polled at every step boundary (on every rank: one that says stop stops all); when true, the
        state goes to ``on_checkpoint`` and :class:`TrainingInterrupted` is raised.
    :param checkpoint_due: polled at every epoch's end: where it says no, the state is neither taken nor given to
        ``on_checkpoint`` (None: at every epoch's end).
    """

    callback: Optional[Callable[[Dict[str, float]], None]] = None
    on_checkpoint: Optional[Callable[[Dict], None]] = None
    should_stop: Optional[Callable[[], bool]] = None
    checkpoint_due: Optional[Callable[[], bool]] = None

    def epoch_checkpoint(self, snapshot: Callable[[], Any]) -> None:
        """At an epoch's end: ``on_checkpoint(snapshot())`` where a checkpoint is wanted and due."""
        if self.on_checkpoint is not None and (self.checkpoint_due is None or self.checkpoint_due()):
            self.on_checkpoint(snapshot())


def fit(model: nn.Module, guide: nn.Module, loader: Iterable, schedule: Optional[Schedule] = None,
        objective: Optional[MeanFieldELBO] = None, hooks: Optional[Hooks] = None, state: Optional[Dict] = None,
        distributed: bool = False) -> List[Dict[str, float]]:
    """Train ``guide`` as the posterior of ``model`` by SVI::

        fit(model, guide, loader, Schedule(epochs=20, lr=1e-2), MeanFieldELBO(estimator="flipout"))

    :param loader: ``(x, y)`` minibatches, iterated once per epoch, with a ``len`` (e.g. a shuffling
        DataLoader); its first batch is checked against the model (dtype, finite inputs, labels in range).
    :param Schedule schedule: epochs, learning rate and its schedule, KL weight (default: ``Schedule()``).
    :param MeanFieldELBO objective: the loss: KL estimate, particles, estimator, fused step (default:
        ``MeanFieldELBO()``, the closed-form KL, one shared weight draw per minibatch).
    :param Hooks hooks: the epoch callback, the checkpoint writer and the stop request.
    :param dict state: a training state given to ``on_checkpoint`` earlier: training resumes exactly
        where it stopped (same batches, same weight draws), so the result equals an uninterrupted run.
    :param bool distributed: data-parallel over torch.distributed's process group (:mod:`pyro_bnn.training.distributed`):
        give each rank its shard of every minibatch (:func:`~pyro_bnn.data.loaders.make_loader` with ``rank`` and
        ``world_size``) and the same seed; every rank then trains the same posterior as one process would on the
        whole minibatches (per-example noise is drawn for the whole minibatch, each rank keeping its rows), and only
        rank 0 needs ``on_checkpoint``.
    :return: one record per epoch: ``epoch, loss, nll, kl, kl.<layer>..., kl_weight, time_s`` (and, where the
        prior's scales are learned, ``hyperprior`` and ``prior_scale.<site>``: each learned scale at the epoch's end);
        the terms are means over the epoch's minibatches in whole-data units (loss = nll + kl,
        the unweighted -ELBO estimate; ``kl.<layer>`` sum to kl).
    """
    schedule = _given(schedule, Schedule, "schedule", "Schedule(epochs=..., lr=...)")
    objective = _given(objective, MeanFieldELBO, "objective", "MeanFieldELBO(...)")
    hooks = _given(hooks, Hooks, "hooks", "Hooks(callback=..., on_checkpoint=..., should_stop=...)")
    num_steps = check_loader(loader)
    step = SVIStep(objective, schedule, distributed)
    with pyro.validation_enabled(objective.validate):
        run = step.init(model, guide, loader, num_steps)
        if state is not None:
            run.restore(state)
        for epoch in range(run.epoch, int(schedule.epochs)):
            _train_epoch(step, run, loader, epoch, schedule.kl_weight, num_steps, hooks)
            record = run.end_epoch(num_steps, {"kl_weight": schedule.kl_weight.epoch_weight(epoch),
                                               **{f"prior_scale.{k}": v for k, v in prior_scales(model).items()}})
            hooks.epoch_checkpoint(run.snapshot)
            if hooks.callback is not None:
                hooks.callback(record)
    return run.history


def _given(value, cls, name: str, example: str):
    """``value``, or ``cls()`` where it is None; a TypeError naming ``name`` for anything else."""
    if value is None:
        return cls()
    if not isinstance(value, cls):
        raise TypeError(f"{name}={value!r}: pass a {cls.__name__}, e.g. {example}")
    return value


def _train_epoch(svi: SVIStep, run: TrainingState, loader, epoch: int, kl_weight: KLWeight, num_steps: int,
                 hooks: Hooks) -> None:
    """The steps of ``epoch``; the loss terms are checked every few steps (:mod:`pyro_bnn.training.loss_monitor`)."""
    for step, x, y in run.batches(epoch, loader):
        if _stop_requested(hooks.should_stop, run, step):
            run.monitor.check()
            if hooks.on_checkpoint is not None:
                hooks.on_checkpoint(run.snapshot())
            raise TrainingInterrupted(epoch, step)
        x, y = x.to(run.device), y.to(run.device)
        rows = shard_rows(loader) if run.sync is not None else None  # this process's part of the minibatch
        try:
            run, record = svi.update(run, x, y, kl_weight(epoch, step, num_steps), rows)
        except (IndexError, RuntimeError):  # e.g. a class index out of range (torch's "index 12 is out of bounds")
            _name_bad_batch(run.modules["model"], x, y, f"loader (batch {step + 1} of epoch {epoch + 1})")
            raise
        run.monitor.add(epoch, step, record, x, y)
        run.add(record)
    run.monitor.check()


def _name_bad_batch(model: nn.Module, x, y, argument: str) -> None:
    """Raise the check's one-line error if this batch (only the first batch is checked before training) is bad."""
    try:
        check_batch(model, x, y, argument)
    except (ValueError, TypeError) as problem:
        raise problem from None


def _stop_requested(should_stop, run: TrainingState, step: int) -> bool:
    """``should_stop()``; in a distributed run agreed by all ranks, every few steps (one collective, no host sync
    at the other steps)."""
    stop = should_stop is not None and bool(should_stop())
    if run.sync is None:
        return stop
    return step % run.monitor.check_every == 0 and run.sync.any(stop, run.device)


__all__ = ["fit", "Hooks", "TrainingInterrupted"]
