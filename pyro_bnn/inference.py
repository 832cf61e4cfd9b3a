"""Training: stochastic variational inference over minibatches, with KL weighting.

Each step draws the weights from the guide, computes the ELBO terms
(:func:`pyro_bnn.elbo.elbo_terms`: the objective of Pyro's ``Trace_ELBO`` for
``elbo="trace"``, of ``TraceMeanField_ELBO`` for ``elbo="mean_field"``), and
takes one Adam step over all guide (and likelihood) parameters together.

``loss = NLL + beta_step * KL``; with the default ``kl_weight=1``,
``kl_warmup_epochs=0`` and ``kl_schedule="uniform"`` this is the exact -ELBO.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Dict, Iterable, List, Optional

import pyro
import torch
from torch import nn

from .elbo import ELBO_KL, ElboTerms, elbo_terms

KL_SCHEDULES = ("uniform", "blundell")
LR_SCHEDULES = ("constant", "cosine")


class KLWeight:
    """The KL weight of each step.

    :param float weight: beta; 1 is the ELBO, < 1 a tempered ("cold") posterior.
    :param int warmup_epochs: ramp beta linearly from ``weight/warmup_epochs`` to ``weight``.
    :param str schedule: ``"uniform"`` (every minibatch carries the whole KL) or ``"blundell"``
        (minibatch ``i`` of ``M`` carries ``M * 2^(M-i) / (2^M - 1)`` of it, Blundell et al. 2015);
        both sum to the ELBO's KL over an epoch.
    """

    def __init__(self, weight: float = 1.0, warmup_epochs: int = 0, schedule: str = "uniform"):
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"kl_weight={weight}: use a finite number >= 0 (1 is the exact ELBO)")
        if int(warmup_epochs) < 0:
            raise ValueError(f"kl_warmup_epochs={warmup_epochs}: use a number of epochs >= 0")
        if schedule not in KL_SCHEDULES:
            raise ValueError(f"kl_schedule={schedule!r} is not known; choose one of {list(KL_SCHEDULES)}")
        self.weight = float(weight)
        self.warmup_epochs = int(warmup_epochs)
        self.schedule = schedule

    @property
    def is_exact_elbo(self) -> bool:
        """Whether training optimises the exact ELBO (no tempering, no warm-up)."""
        return self.weight == 1.0 and self.warmup_epochs == 0

    def epoch_weight(self, epoch: int) -> float:
        """Mean weight of the minibatches of ``epoch`` (0-based): beta after warm-up."""
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


def _device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _check_finite(terms: ElboTerms, epoch: int, step: int) -> None:
    if torch.isfinite(terms.loss):
        return
    if not torch.isfinite(terms.nll):
        where = "the NLL"
    else:
        bad = [name for name, v in terms.kl_sites.items() if not torch.isfinite(v)]
        where = f"the KL of site(s) {bad}"
    raise FloatingPointError(
        f"the loss became {float(terms.loss)} at epoch {epoch + 1}, step {step + 1}: {where} is not finite; "
        "lower the learning rate or the guide's init_scale"
    )


def _lr_scheduler(optimizer, schedule: str, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    if schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * i / total_steps)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0)


def _terms_record(terms: ElboTerms) -> Dict[str, torch.Tensor]:
    """loss, nll, kl and ``kl.<layer>`` of one step."""
    record = {"loss": terms.loss, "nll": terms.nll, "kl": terms.kl}
    record.update({f"kl.{layer}": value for layer, value in terms.kl_layers().items()})
    return record


def initialize_guide(guide: nn.Module, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> nn.Module:
    """Run ``guide`` once so an autoguide creates its (lazily built) parameters; returns ``guide``."""
    with torch.no_grad():
        guide(x, y)
    return guide


def fit(
    model: nn.Module,
    guide: nn.Module,
    loader: Iterable,
    epochs: int = 100,
    lr: float = 1e-2,
    elbo: str = "mean_field",
    num_particles: int = 1,
    kl_weight: Optional[KLWeight] = None,
    lr_schedule: str = "constant",
    validate: bool = False,
    callback: Optional[Callable[[Dict[str, float]], None]] = None,
) -> List[Dict[str, float]]:
    """Train ``guide`` as the posterior of ``model`` by SVI.

    :param loader: iterable of ``(x, y)`` minibatches (e.g. a shuffling DataLoader).
    :param str elbo: ``"mean_field"`` (closed-form KL, TraceMeanField_ELBO) or ``"trace"``
        (Monte Carlo KL, Trace_ELBO).
    :param int num_particles: weight draws per step.
    :param KLWeight kl_weight: KL weighting (default: the exact ELBO).
    :param str lr_schedule: ``"constant"``, or ``"cosine"``: decay the learning rate from ``lr`` to 0
        over all steps (the objective is unchanged; the last steps average out the gradient noise).
    :param bool validate: Pyro's distribution argument validation (slower; on in tests).
    :param callback: called with each epoch's record.
    :return: one record per epoch: ``epoch, loss, nll, kl, kl.<layer>..., kl_weight, time_s``;
        the terms are means over the epoch's minibatches in whole-data units (loss = nll + kl,
        the unweighted -ELBO estimate; ``kl.<layer>`` sum to kl).
    """
    if elbo not in ELBO_KL:
        raise ValueError(f"elbo={elbo!r} is not known; choose one of {sorted(ELBO_KL)}")
    if int(epochs) < 1:
        raise ValueError(f"epochs={epochs}: train for at least one epoch")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr}: the learning rate must be a finite number > 0")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule={lr_schedule!r} is not known; choose one of {list(LR_SCHEDULES)}")
    kl_weight = kl_weight or KLWeight()
    device = _device(model)
    history: List[Dict[str, float]] = []
    num_steps = len(loader)
    start = time.perf_counter()
    with pyro.validation_enabled(validate):
        x, y = next(iter(loader))
        initialize_guide(guide, x.to(device), y.to(device))
        optimizer = torch.optim.Adam(_parameters(guide, model), lr=lr, foreach=True)
        scheduler = _lr_scheduler(optimizer, lr_schedule, int(epochs) * num_steps)
        for epoch in range(int(epochs)):
            sums: Dict[str, torch.Tensor] = {}
            for step, (x, y) in enumerate(loader):
                x, y = x.to(device), y.to(device)
                terms = elbo_terms(model, guide, x, y, kl=ELBO_KL[elbo], num_particles=num_particles)
                _check_finite(terms, epoch, step)
                beta = kl_weight(epoch, step, num_steps)
                optimizer.zero_grad(set_to_none=True)
                (terms.nll + beta * terms.kl).backward()
                optimizer.step()
                scheduler.step()
                for key, value in _terms_record(terms).items():
                    sums[key] = sums.get(key, 0.0) + value.detach()
            record = {"epoch": epoch + 1, **{k: float(v) / num_steps for k, v in sums.items()}}
            record["kl_weight"] = kl_weight.epoch_weight(epoch)
            record["time_s"] = time.perf_counter() - start
            history.append(record)
            if callback is not None:
                callback(record)
    return history
