"""How fit trains over time: the epochs, the learning rate and its schedule, and the KL weight of each step (plain
values: the app checks a config's with them before it imports torch; the step builds torch's learning-rate scheduler).

:class:`KLWeight` owns the weight of every step and the rule of when a run optimises the exact ELBO (one place
for both: :func:`~pyro_bnn.fit`, ``metrics.json``, the log and the plots' titles read it). :class:`Schedule` is what a
user builds once and hands to :func:`~pyro_bnn.fit`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Union

from ..checks import ArgumentError, check_count, check_positive

KL_SCHEDULES = ("uniform", "blundell")
LR_SCHEDULES = ("constant", "cosine")


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
            raise ArgumentError("kl_weight", weight, fix="use a finite number >= 0 (1 is the exact ELBO)")
        check_count(warmup_epochs, "kl_warmup_epochs", minimum=0)
        if schedule not in KL_SCHEDULES:
            raise ArgumentError("kl_schedule", schedule, joiner=" is ", fix=f"not known; choose one of {list(KL_SCHEDULES)}")
        if isinstance(warmup_fraction, bool) or not isinstance(warmup_fraction, Real) or not 0 <= warmup_fraction <= 0.5:
            raise ArgumentError("kl_warmup_fraction", warmup_fraction,
                                fix="use a share of the run's epochs from 0 to 0.5, e.g. 0.3 (0: no warm-up; more would "
                                    "leave less than half the run on the exact ELBO)")
        if warmup_fraction and warmup_epochs:
            raise ArgumentError("kl_warmup_fraction", warmup_fraction, fix=f"kl_warmup_epochs={warmup_epochs} sets the KL "
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
        """The weighting of a run of ``epochs`` epochs in words: its weight, and its warm-up where it has one (a warm-up
        of one epoch is none: that epoch already has the whole weight)."""
        warmup = self.warmup_of(epochs)
        return f"kl_weight={self.weight}" + (f", a KL warm-up over {warmup} of {epochs} epochs" if warmup > 1 else "")

    def epoch_weight(self, epoch: int) -> float:
        """Mean weight of the minibatches of ``epoch`` (0-based): beta after warm-up."""
        if self.warmup_fraction:
            raise ArgumentError("kl_warmup_fraction", self.warmup_fraction, fix="the weights need the run's length; use "
                                                                                "KLWeight.over(epochs)")
        return self.weight * min(1.0, (epoch + 1) / self.warmup_epochs) if self.warmup_epochs else self.weight

    def __call__(self, epoch: int, step: int, num_steps: int) -> float:
        """Weight of minibatch ``step`` (0-based) of ``num_steps`` in ``epoch`` (0-based)."""
        beta = self.epoch_weight(epoch)
        if self.schedule == "blundell":
            i, m = step + 1, num_steps
            beta *= m * 2.0 ** (-i) / (1.0 - 2.0 ** (-m))
        return beta


def as_kl_weight(kl_weight) -> KLWeight:
    """``kl_weight`` as a :class:`KLWeight` (None: 1, the exact ELBO; a number: that weight at every step)."""
    if kl_weight is None:
        return KLWeight()
    if isinstance(kl_weight, KLWeight):
        return kl_weight
    if isinstance(kl_weight, Real) and not isinstance(kl_weight, bool):  # numpy and torch scalars too
        return KLWeight(float(kl_weight))
    raise TypeError(f"kl_weight={kl_weight!r}: pass a number (the KL weight of every step) or a "
                    "KLWeight(weight, warmup_epochs, schedule, warmup_fraction)")


@dataclass(frozen=True)
class Schedule:
    """How long and how fast :func:`~pyro_bnn.fit` trains.

    :param int epochs: passes over the loader.
    :param float lr: Adam's learning rate.
    :param str lr_schedule: ``"constant"``, or ``"cosine"``: decay the learning rate from ``lr`` to 0 over all steps
        (the objective is unchanged; the last steps average out the gradient noise).
    :param kl_weight: a :class:`KLWeight` (a warm-up by share is resolved over ``epochs``), or a number: the KL weight
        of every step (None: 1, the exact ELBO).
    """

    epochs: int = 100
    lr: float = 1e-2
    lr_schedule: str = "constant"
    kl_weight: Union[KLWeight, float, None] = None

    def __post_init__(self):
        check_count(self.epochs, "epochs")
        check_positive(self.lr, "lr")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ArgumentError("lr_schedule", self.lr_schedule, joiner=" is ",
                                fix=f"not known; choose one of {list(LR_SCHEDULES)}")
        kl_weight = as_kl_weight(self.kl_weight).over(int(self.epochs))
        if kl_weight.warmup_epochs > self.epochs:
            raise ArgumentError("kl_warmup_epochs", kl_weight.warmup_epochs,
                                fix=f"a warm-up longer than the run's {self.epochs} epochs never reaches the KL weight "
                                    f"{kl_weight.weight}; use at most {max(1, self.epochs // 2)} (half the run keeps the "
                                    "exact ELBO), or a share of the run: kl_warmup_fraction=0.3")
        object.__setattr__(self, "kl_weight", kl_weight)


__all__ = ["Schedule", "KLWeight"]
