"""Finding the step where training went bad, without reading the loss on the host at every step.

The loss terms of each step stay on the device; every :data:`CHECK_EVERY` steps (and at each epoch's end,
and before a checkpoint) :class:`LossMonitor` reads them in one transfer. A step has gone bad when its loss
is NaN or inf, or has exploded to :data:`EXPLOSION` times the run's first loss (a loss that falls never
does). The error names the epoch, the step and the term: NaN inputs, the NLL, or the KL of named layers.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch

from ..objectives.elbo import StepRecord

#: Steps between two checks (one host read each).
CHECK_EVERY = 25
#: A step whose loss exceeds this multiple of the run's first loss has diverged.
EXPLOSION = 1e4


class LossMonitor:
    """Collects each step's loss terms (device tensors) and checks them every :data:`CHECK_EVERY` steps."""

    def __init__(self, check_every: int = CHECK_EVERY):
        self.check_every = check_every
        #: The run's first step: its loss, nll and kl (host floats), what an exploding loss is measured against.
        self.first: Optional[Dict[str, float]] = None
        self._pending: List[Tuple[int, int, StepRecord, torch.Tensor]] = []

    def add(self, epoch: int, step: int, record: StepRecord, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> None:
        """Keep step ``step`` of ``epoch`` (0-based), its terms ``record`` and whether its inputs ``x`` and (floating)
        targets ``y`` were finite."""
        finite_y = torch.isfinite(y).all() if y is not None and y.is_floating_point() else torch.ones((), dtype=torch.bool)
        finite_x = torch.isfinite(x).all() if x.is_floating_point() else torch.ones((), dtype=torch.bool)
        self._pending.append((epoch, step, record, torch.stack([finite_x, finite_y.to(finite_x.device)])))
        if len(self._pending) >= self.check_every:
            self.check()

    def check(self) -> None:
        """Raise :class:`FloatingPointError` for the first kept step that went bad; forget the kept steps."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        keys = list(pending[0][2].keys)
        table = torch.stack([torch.cat([r.values.float(), f.float()]) for _, _, r, f in pending]).cpu()
        if self.first is None:
            self.first = {k: float(table[0, keys.index(k)]) for k in ("loss", "nll", "kl")}
        loss = table[:, keys.index("loss")]
        limit = EXPLOSION * max(abs(self.first["loss"]), 1.0)
        bad = ~torch.isfinite(loss) | (loss.abs() > limit)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            epoch, step = pending[i][0], pending[i][1]
            raise FloatingPointError(self._message(dict(zip(keys, table[i, :-2].tolist())), bool(table[i, -2]),
                                                   bool(table[i, -1]), f"at epoch {epoch + 1}, step {step + 1}"))

    def _message(self, row: Dict[str, float], x_finite: bool, y_finite: bool, at: str) -> str:
        loss = row["loss"]
        if not x_finite:
            return f"the inputs x of the batch {at} hold NaN or inf values: clean or impute the data"
        if not y_finite:
            return f"the targets y of the batch {at} hold NaN or inf values: clean or drop those examples"
        advice = "lower the learning rate or the guide's init_scale"
        if math.isfinite(loss):
            grew = max(("nll", "kl"), key=lambda k: row[k] / max(abs(self.first[k]), 1.0))
            return (f"the loss exploded to {loss:.3g} {at} (it was {self.first['loss']:.3g} at the first step; "
                    f"the {grew.upper()} grew most): {advice}")
        if not math.isfinite(row["nll"]):
            where = "the NLL"
        else:
            where = f"the KL of layer(s) {[k[3:] for k, v in row.items() if k.startswith('kl.') and not math.isfinite(v)]}"
        return f"the loss became {loss} {at}: {where} is not finite; {advice}"
