"""One training step as a transition of a state value: :class:`SVIStep`'s ``init`` and ``update``.

``init(model, guide, loader)`` checks the loader's first batch against the model, initialises the guide, and builds
the state: a :class:`~pyro_bnn.training.state.TrainingState` holding the model, the guide, one Adam over all their
parameters and its learning-rate schedule. ``update(state, x, y, beta)`` takes one step: the objective's terms of the
minibatch (:class:`~pyro_bnn.objectives.mean_field_elbo.MeanFieldELBO`), ``NLL + beta * KL`` back-propagated, an all-reduce of the
gradients in a data-parallel run, one Adam step; it returns the state and the step's record (its terms, detached).
:func:`pyro_bnn.fit` is a loop over it.
"""

from __future__ import annotations

import logging
import math
from typing import Iterable, List, Tuple

import torch
from torch import nn

from ..batch_checks import check_batch, first_batch
from ..guides import initialize_guide
from ..model.networks import BayesianModel, device_of
from ..objectives.elbo import StepRecord
from ..objectives.estimators import describe_layers
from ..objectives.mean_field_elbo import MeanFieldELBO
from .distributed import GradientAllReduce
from .schedules import Schedule
from .state import TrainingState

log = logging.getLogger(__name__)


def optimizer(parameters: List[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """One Adam over all ``parameters``, as a single fused kernel where torch has one for their device."""
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in parameters)
    return torch.optim.Adam(parameters, lr=lr, fused=fused or None)


def lr_scheduler(optimizer, schedule: str, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of ``fit`` (one of :data:`~pyro_bnn.training.schedules.LR_SCHEDULES`) over
    ``total_steps`` optimizer steps."""
    if schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * i / total_steps)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0)


class SVIStep:
    """SVI's step over a :class:`~pyro_bnn.training.state.TrainingState`.

    :param MeanFieldELBO objective: the loss and its terms.
    :param Schedule schedule: the learning rate and its schedule (the KL weight is the loop's: ``beta`` per step).
    :param bool distributed: all-reduce the gradients over torch.distributed's process group
        (:mod:`pyro_bnn.training.distributed`).
    """

    def __init__(self, objective: MeanFieldELBO, schedule: Schedule, distributed: bool = False):
        self.objective, self.schedule, self.distributed = objective, schedule, distributed

    def init(self, model: nn.Module, guide: nn.Module, loader: Iterable, num_steps: int) -> TrainingState:
        """The state before the first step of a run of ``num_steps`` steps per epoch over ``loader``."""
        device = device_of(model)
        x, y = (t.to(device) for t in first_batch(loader))
        check_batch(model, x, y)
        initialize_guide(guide, x, y)
        log.info("training step: %s", "fused mean-field (one noise draw, flat parameters)"
                 if self.objective.is_fused(model, guide) else "Pyro traces of the guide and the model")
        if isinstance(model, BayesianModel):
            log.info("%s", describe_layers(model, self.objective.estimator))
        parameters = self.objective.parameters(model, guide)
        adam = optimizer(parameters, self.schedule.lr)
        scheduler = lr_scheduler(adam, self.schedule.lr_schedule, int(self.schedule.epochs) * num_steps)
        modules = {"model": model, "guide": guide, "optimizer": adam, "scheduler": scheduler}
        sync = GradientAllReduce(parameters) if self.distributed else None
        return TrainingState(modules, loader, device, sync)

    def update(self, state: TrainingState, x: torch.Tensor, y: torch.Tensor, beta: float,
               rows: Tuple[int, int] = None) -> Tuple[TrainingState, StepRecord]:
        """One step on the minibatch ``(x, y)`` (the part ``rows`` of it in a distributed run) with KL weight
        ``beta``: the state after it, and the step's record (the whole minibatch's, across the ranks of a distributed
        run)."""
        adam, scheduler = state.modules["optimizer"], state.modules["scheduler"]
        terms = self.objective.terms(state.modules["model"], state.modules["guide"], x, y, rows)
        adam.zero_grad(set_to_none=True)
        (terms.nll + beta * terms.kl).backward()
        record = terms.record()
        if state.sync is not None:
            record = state.sync(x.shape[0], record)
        adam.step()
        scheduler.step()
        return state, record


__all__ = ["SVIStep", "optimizer", "lr_scheduler"]
