"""Training: stochastic variational inference over minibatches, with KL weighting.

Each step draws the weights from the guide, computes the ELBO terms (the
objective of Pyro's ``Trace_ELBO`` for ``elbo="trace"``, of ``TraceMeanField_ELBO``
for ``elbo="mean_field"``), and takes one fused Adam step over all guide (and
likelihood) parameters together. The terms come from the fused mean-field step
(:mod:`pyro_bnn.fused`) where it applies, else from Pyro's traces
(:func:`pyro_bnn.elbo.elbo_terms`): :func:`training_objective`.
``estimator`` picks how Linear/Conv2d layers draw their noise (see
:mod:`pyro_bnn.estimators`): one shared weight draw per minibatch, local
reparameterization or Flipout; all three estimate the same loss.

``loss = NLL + beta_step * KL``; with the default ``kl_weight=1``,
``kl_warmup_epochs=0`` and ``kl_schedule="uniform"`` this is the exact -ELBO
(after a warm-up over at most half of the epochs, too).

The loss terms stay on the device and are checked every few steps (:mod:`pyro_bnn.loss_monitor`);
the run's position and random state live in a :class:`~pyro_bnn.training_state.TrainingState`
(checkpoints, resume); ``distributed=True`` trains on the ranks of a process group
(:mod:`pyro_bnn.distributed`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from numbers import Real
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

import pyro
import torch
from torch import nn

from .checks import check_batch, check_count, check_loader, check_positive, first_batch
from .distributed import GradientAllReduce, shard_rows
from .elbo import ELBO_KL, ElboTerms, StepRecord, elbo_terms
from .empirical_bayes import EmpiricalBayes, prior_scales
from .estimators import estimator_handler
from .fused import FusedMeanField, unfusable_reason
from .guides import MeanFieldNormal, initialize_guide
from .models import device_of
from .training_state import TrainingState

KL_SCHEDULES = ("uniform", "blundell")
LR_SCHEDULES = ("constant", "cosine")
#: ``fused`` choices: the fused mean-field step wherever it applies, always (an error where it cannot), never.
FUSED = ("auto", True, False)

log = logging.getLogger(__name__)

#: Weight draws per step beyond which a step only exhausts memory (each draw holds the network's activations).
MAX_PARTICLES = 1_000


def is_fused_choice(value) -> bool:
    """Whether ``value`` is one of :data:`FUSED` (``True``/``False`` themselves, not 1 or 0)."""
    return isinstance(value, bool) or value == "auto"


class KLWeight:
    """The KL weight of each step of a run, and whether the run optimises the exact ELBO: the one place of both rules.

    :param float weight: beta; 1 is the ELBO, < 1 a tempered ("cold") posterior.
    :param int warmup_epochs: ramp beta linearly from ``weight/warmup_epochs`` to ``weight``.
    :param str schedule: ``"uniform"`` (every minibatch carries the whole KL) or ``"blundell"``
        (minibatch ``i`` of ``M`` carries ``M * 2^(M-i) / (2^M - 1)`` of it, Blundell et al. 2015);
        both sum to the ELBO's KL over an epoch.
    :param float warmup_fraction: > 0: the warm-up over this share (at most 0.5) of the run's epochs instead of
        ``warmup_epochs``, a warm-up that scales with the run (:meth:`warmup_of`); :meth:`over` resolves it for a run.

    A run optimises the exact ELBO (:meth:`is_exact_elbo`) with weight 1 and a warm-up over at most half of its
    epochs: an optimisation device, the rest of the run, its end included, is on the exact ELBO. A warm-up of one
    epoch is no warm-up (its first epoch already has the whole weight).
    """

    def __init__(self, weight: float = 1.0, warmup_epochs: int = 0, schedule: str = "uniform",
                 warmup_fraction: float = 0.0):
        if isinstance(weight, bool) or not isinstance(weight, Real) or not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"kl_weight={weight!r}: use a finite number >= 0 (1 is the exact ELBO)")
        check_count(warmup_epochs, "kl_warmup_epochs", minimum=0)
        if schedule not in KL_SCHEDULES:
            raise ValueError(f"kl_schedule={schedule!r} is not known; choose one of {list(KL_SCHEDULES)}")
        if isinstance(warmup_fraction, bool) or not isinstance(warmup_fraction, Real) or not 0 <= warmup_fraction <= 0.5:
            raise ValueError(f"kl_warmup_fraction={warmup_fraction!r}: use a share of the run's epochs from 0 to 0.5, "
                             "e.g. 0.3 (0: no warm-up; more would leave less than half the run on the exact ELBO)")
        if warmup_fraction and warmup_epochs:
            raise ValueError(f"kl_warmup_fraction={warmup_fraction}: kl_warmup_epochs={warmup_epochs} sets the KL "
                             "warm-up too; set one of them, the other to 0")
        self.weight = float(weight)
        self.warmup_epochs = int(warmup_epochs)
        self.schedule = schedule
        self.warmup_fraction = float(warmup_fraction)

    def warmup_of(self, epochs: int) -> int:
        """The warm-up's epochs in a run of ``epochs``: ``warmup_epochs``, or ``warmup_fraction`` of the epochs
        (rounded, at least 1, and never more than half of them: a share of at most 0.5 keeps the exact ELBO)."""
        if not self.warmup_fraction:
            return self.warmup_epochs
        return min(max(1, round(self.warmup_fraction * epochs)), max(1, epochs // 2))

    def over(self, epochs: int) -> "KLWeight":
        """The weights of a run of ``epochs`` epochs: the warm-up in epochs."""
        return KLWeight(self.weight, self.warmup_of(epochs), self.schedule)

    def is_exact_elbo(self, epochs: int) -> bool:
        """Whether a run of ``epochs`` epochs optimises the exact ELBO: weight 1, and a warm-up over at most half of
        the epochs (or of one epoch: none)."""
        warmup = self.warmup_of(epochs)
        return self.weight == 1.0 and (warmup <= 1 or 2 * warmup <= epochs)

    def describe(self, epochs: int) -> str:
        """The weighting of a run of ``epochs`` epochs in words: its weight, and its warm-up where it has one."""
        warmup = self.warmup_of(epochs)
        return f"kl_weight={self.weight}" + (f", a KL warm-up over {warmup} of {epochs} epochs" if warmup else "")

    def epoch_weight(self, epoch: int) -> float:
        """Mean weight of the minibatches of ``epoch`` (0-based): beta after warm-up."""
        if self.warmup_fraction:
            raise ValueError(f"kl_warmup_fraction={self.warmup_fraction}: the weights need the run's length; use "
                             "KLWeight.over(epochs)")
        return self.weight * min(1.0, (epoch + 1) / self.warmup_epochs) if self.warmup_epochs else self.weight

    def __call__(self, epoch: int, step: int, num_steps: int) -> float:
        """Weight of minibatch ``step`` (0-based) of ``num_steps`` in ``epoch`` (0-based)."""
        beta = self.epoch_weight(epoch)
        if self.schedule == "blundell":
            i, m = step + 1, num_steps
            beta *= m * 2.0 ** (-i) / (1.0 - 2.0 ** (-m))
        return beta


def _parameters(*modules: nn.Module) -> List[torch.nn.Parameter]:
    seen, params = set(), []
    for module in modules:
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def lr_scheduler(optimizer, schedule: str, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of ``fit`` (one of :data:`LR_SCHEDULES`) over ``total_steps`` optimizer steps."""
    if schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * i / total_steps)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0)


class Objective(NamedTuple):
    """What one training step computes and trains.

    :ivar terms: ``(x, y, rows=None) -> ElboTerms`` of the minibatch (differentiable loss terms); ``rows``:
        ``(first row, rows of the whole minibatch)`` where ``(x, y)`` is this process's part of a minibatch
        (:func:`~pyro_bnn.distributed.shard_rows`), so that per-example noise is drawn for the whole minibatch.
    :ivar parameters: the tensors an optimizer of this objective trains.
    :ivar fused: whether the terms come from :class:`~pyro_bnn.fused.FusedMeanField`.
    """

    terms: Callable[..., ElboTerms]
    parameters: List[torch.nn.Parameter]
    fused: bool


def training_objective(
    model: nn.Module,
    guide: nn.Module,
    elbo: str = "mean_field",
    estimator: str = "shared",
    num_particles: int = 1,
    fused: Union[str, bool] = "auto",
) -> Objective:
    """The loss of one SVI step and the parameters it trains; ``guide`` must have been run once.

    :param fused: ``"auto"``: the fused mean-field step (:mod:`pyro_bnn.fused`) where it applies (guide
        :func:`~pyro_bnn.guides.auto_normal`, Normal priors), Pyro's traces elsewhere; ``True``: the fused
        step or an error saying why it cannot; ``False``: Pyro's traces (:func:`~pyro_bnn.elbo.elbo_terms`).
        Both estimate the same loss; their noise is drawn differently, so a seed gives other numbers.
    """
    _check_elbo_and_fused(elbo, fused)
    kl = ELBO_KL[elbo]
    reason = unfusable_reason(model, guide) if fused is not False else "fused=False"
    if fused is True and reason is not None:
        raise ValueError(f"fused=True: the fused mean-field step cannot train this pair: {reason}; "
                         "use fused='auto' or False")
    if reason is None:
        step = FusedMeanField(model, guide, kl=kl, estimator=estimator)
        terms = lambda x, y, rows=None: step(x, y, num_particles=num_particles, rows=rows)  # noqa: E731
        return Objective(terms, _parameters(model) + step.parameters(), True)
    handler = estimator_handler(estimator)
    learned = EmpiricalBayes.of(model)
    if learned is not None and not isinstance(guide, MeanFieldNormal):
        raise ValueError(f"learned prior scales (learn_scale=True) are set from a mean-field Normal guide, not a "
                         f"{type(guide).__name__}: use guide=auto_normal, or prior.learn_scale=false")

    def terms(x, y, rows=None):
        hyperprior = learned.update(guide) if learned is not None else None
        with handler.for_rows(rows):
            terms = elbo_terms(model, guide, x, y, kl=kl, num_particles=num_particles)
        return dataclasses.replace(terms, hyperprior=hyperprior)

    return Objective(terms, _parameters(guide, model), False)


def optimizer(parameters: List[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """One Adam over all ``parameters``, as a single fused kernel where torch has one for their device."""
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in parameters)
    return torch.optim.Adam(parameters, lr=lr, fused=fused or None)


class TrainingInterrupted(Exception):
    """Raised by :func:`fit` at a step boundary once ``should_stop()`` is true, after the checkpoint."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"interrupted at epoch {epoch + 1}, after step {step}")
        self.epoch, self.step = epoch, step


def _as_kl_weight(kl_weight) -> KLWeight:
    if kl_weight is None:
        return KLWeight()
    if isinstance(kl_weight, KLWeight):
        return kl_weight
    if isinstance(kl_weight, Real) and not isinstance(kl_weight, bool):  # numpy and torch scalars too
        return KLWeight(float(kl_weight))
    raise TypeError(f"kl_weight={kl_weight!r}: pass a number (the KL weight of every step) or a "
                    "KLWeight(weight, warmup_epochs, schedule, warmup_fraction)")


def _check_elbo_and_fused(elbo, fused) -> None:
    if elbo not in ELBO_KL:
        raise ValueError(f"elbo={elbo!r} is not known; choose one of {sorted(ELBO_KL)}")
    if not is_fused_choice(fused):
        raise ValueError(f"fused={fused!r}: use 'auto', True or False")


def check_fit_arguments(elbo="mean_field", fused="auto", epochs=100, lr=1e-2, lr_schedule="constant",
                        estimator="shared", num_particles=1) -> None:
    """The error :func:`fit` gives for its arguments of these names, before any work (the app checks its config
    with it)."""
    _check_elbo_and_fused(elbo, fused)
    check_count(epochs, "epochs")
    check_positive(lr, "lr")
    check_count(num_particles, "num_particles", maximum=MAX_PARTICLES)
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={lr_schedule!r} is not known; choose one of {list(LR_SCHEDULES)}")
    estimator_handler(estimator)  # an unknown name fails here, before any work


def _train_step(objective: Objective, run: TrainingState, x, y, rows, beta: float) -> StepRecord:
    """One SVI step on ``(x, y)`` (the part ``rows`` of the minibatch in a distributed run); its record (the whole
    minibatch's, across the ranks of a distributed run)."""
    adam, scheduler = run.modules["optimizer"], run.modules["scheduler"]
    terms = objective.terms(x, y, rows)
    adam.zero_grad(set_to_none=True)
    (terms.nll + beta * terms.kl).backward()
    record = terms.record()
    if run.sync is not None:
        record = run.sync(x.shape[0], record)
    adam.step()
    scheduler.step()
    return record


def fit(
    model: nn.Module, guide: nn.Module, loader: Iterable, epochs: int = 100, lr: float = 1e-2,
    elbo: str = "mean_field", num_particles: int = 1, kl_weight: Union[KLWeight, float, None] = None,
    lr_schedule: str = "constant", estimator: str = "shared", validate: bool = False,
    callback: Optional[Callable[[Dict[str, float]], None]] = None, state: Optional[Dict] = None,
    on_checkpoint: Optional[Callable[[Dict], None]] = None, should_stop: Optional[Callable[[], bool]] = None,
    fused: Union[str, bool] = "auto", distributed: bool = False,
) -> List[Dict[str, float]]:
    """Train ``guide`` as the posterior of ``model`` by SVI.

    :param loader: ``(x, y)`` minibatches, iterated once per epoch, with a ``len`` (e.g. a shuffling
        DataLoader); its first batch is checked against the model (dtype, finite inputs, labels in range).
    :param str elbo: ``"mean_field"`` (closed-form KL, TraceMeanField_ELBO) or ``"trace"``
        (Monte Carlo KL, Trace_ELBO).
    :param int num_particles: weight draws per step.
    :param kl_weight: a :class:`KLWeight` (a warm-up by share resolved over ``epochs``), or a number: the KL weight of
        every step (default: 1, the exact ELBO).
    :param str estimator: ``"shared"`` (one weight draw per minibatch), ``"local_reparameterization"`` or
        ``"flipout"`` (:mod:`pyro_bnn.estimators`).
    :param str lr_schedule: ``"constant"``, or ``"cosine"``: decay the learning rate from ``lr`` to 0
        over all steps (the objective is unchanged; the last steps average out the gradient noise).
    :param fused: ``"auto"``, ``True`` or ``False``: whether the step is the fused mean-field one
        (:func:`training_objective`).
    :param bool validate: Pyro's distribution argument validation (slower; on in tests).
    :param bool distributed: data-parallel over torch.distributed's process group (:mod:`pyro_bnn.distributed`):
        give each rank its shard of every minibatch (:func:`~pyro_bnn.data.make_loader` with ``rank`` and
        ``world_size``) and the same seed; every rank then trains the same posterior as one process would on the
        whole minibatches (per-example noise is drawn for the whole minibatch, each rank keeping its rows), and only
        rank 0 needs ``on_checkpoint``.
    :param callback: called with each epoch's record.
    :param dict state: a training state given to ``on_checkpoint`` earlier: training resumes exactly
        where it stopped (same batches, same weight draws), so the result equals an uninterrupted run.
    :param on_checkpoint: called with the training state (plain tensors and numbers, for
        ``torch.save``) at the end of every epoch and when stopping.
    :param should_stop: polled at every step boundary (on every rank: one that says stop stops all); when
        true, the state goes to ``on_checkpoint`` and :class:`TrainingInterrupted` is raised.
    :return: one record per epoch: ``epoch, loss, nll, kl, kl.<layer>..., kl_weight, time_s`` (and, where the
        prior's scales are learned, ``hyperprior`` and ``prior_scale.<site>``: each learned scale at the epoch's end);
        the terms are means over the epoch's minibatches in whole-data units (loss = nll + kl,
        the unweighted -ELBO estimate; ``kl.<layer>`` sum to kl).
    """
    check_fit_arguments(elbo, fused, epochs, lr, lr_schedule, estimator, num_particles)
    kl_weight = _as_kl_weight(kl_weight).over(int(epochs))
    num_steps = check_loader(loader)
    device = device_of(model)
    with pyro.validation_enabled(validate):
        objective, run = _set_up(model, guide, loader, device, elbo, estimator, num_particles, fused, lr,
                                 lr_schedule, int(epochs) * num_steps, distributed)
        if state is not None:
            run.restore(state)
        for epoch in range(run.epoch, int(epochs)):
            _train_epoch(objective, run, loader, epoch, kl_weight, num_steps, should_stop, on_checkpoint)
            record = run.end_epoch(num_steps, {"kl_weight": kl_weight.epoch_weight(epoch),
                                               **{f"prior_scale.{k}": v for k, v in prior_scales(model).items()}})
            if on_checkpoint is not None:
                on_checkpoint(run.snapshot())
            if callback is not None:
                callback(record)
    return run.history


def _set_up(model, guide, loader, device, elbo, estimator, num_particles, fused, lr, lr_schedule,
            total_steps, distributed) -> Tuple[Objective, TrainingState]:
    """Check the first batch, initialise the guide, and build the objective, optimizer and schedule."""
    x, y = (t.to(device) for t in first_batch(loader))
    check_batch(model, x, y)
    initialize_guide(guide, x, y)
    objective = training_objective(model, guide, elbo, estimator, num_particles, fused)
    log.info("training step: %s", "fused mean-field (one noise draw, flat parameters)" if objective.fused
             else "Pyro traces of the guide and the model")
    if hasattr(model, "describe_layers"):
        log.info("%s", model.describe_layers(estimator))
    adam = optimizer(objective.parameters, lr)
    scheduler = lr_scheduler(adam, lr_schedule, total_steps)
    modules = {"model": model, "guide": guide, "optimizer": adam, "scheduler": scheduler}
    sync = GradientAllReduce(objective.parameters) if distributed else None
    return objective, TrainingState(modules, loader, device, sync)


def _train_epoch(objective: Objective, run: TrainingState, loader, epoch: int, kl_weight: KLWeight, num_steps: int,
                 should_stop, on_checkpoint) -> None:
    """The steps of ``epoch``; the loss terms are checked every few steps (:mod:`pyro_bnn.loss_monitor`)."""
    for step, x, y in run.batches(epoch, loader):
        if _stop_requested(should_stop, run, step):
            run.monitor.check()
            if on_checkpoint is not None:
                on_checkpoint(run.snapshot())
            raise TrainingInterrupted(epoch, step)
        x, y = x.to(run.device), y.to(run.device)
        rows = shard_rows(loader) if run.sync is not None else None  # this process's part of the minibatch
        try:
            record = _train_step(objective, run, x, y, rows, kl_weight(epoch, step, num_steps))
        except (IndexError, RuntimeError):  # e.g. a class index out of range (torch's "index 12 is out of bounds")
            _name_bad_batch(run.modules["model"], x, y, f"loader (batch {step + 1} of epoch {epoch + 1})")
            raise
        run.monitor.add(epoch, step, record, x)
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
