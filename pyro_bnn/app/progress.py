"""What a run shows while it trains: a log line per epoch, a tqdm bar, optional TensorBoard scalars."""

from __future__ import annotations

import logging
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Dict, Optional

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)


def require_tensorboard():
    """torch's ``SummaryWriter`` class; an ImportError naming the extra when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError("tensorboard=true needs the tensorboard package: pip install 'pyro_bnn[tensorboard]' "
                          "(or set tensorboard=false)") from None
    return SummaryWriter


class EpochReporter:
    """Callback for :func:`pyro_bnn.training.loop.fit`: reports each epoch's record (about 20 of them in the log).

    :param int epochs: the number of epochs of the run (the bar's length).
    :param bool progress: show a tqdm bar with the loss, NLL and KL; it stays quiet anyway when
        stderr is not a terminal.
    :param tensorboard_dir: where to write TensorBoard scalars (``train/loss``, ``train/kl.<layer>``...), or None.
    :param tracker: the run's :class:`~pyro_bnn.app.tracking.RunTracker` (``tracker=mlflow``), or None.

    Used as a context manager; while the bar shows, console log lines are printed above it.
    """

    def __init__(self, epochs: int, progress: bool = False, tensorboard_dir: Optional[Path] = None, tracker=None):
        self.epochs, self.tracker = int(epochs), tracker
        # No bar object at all when quiet (a sweep's jobs): tqdm's lock is a multiprocessing lock, a semaphore that a
        # job's worker stopped by Ctrl-C would leave behind.
        self.bar = tqdm(total=self.epochs, unit="epoch", dynamic_ncols=True, leave=False, file=sys.stderr) \
            if progress and sys.stderr.isatty() else None
        self._stack = ExitStack()
        #: The log gets the first epoch, the last, and one in ``log_every`` (about 20 lines per run).
        self.log_every = max(1, self.epochs // 20)
        self.writer = require_tensorboard()(log_dir=str(tensorboard_dir)) if tensorboard_dir is not None else None

    def __call__(self, record: Dict[str, float]) -> None:
        epoch = int(record["epoch"])
        if epoch == 1 or epoch % self.log_every == 0 or epoch == self.epochs:
            hyperprior = f" hyperprior {record['hyperprior']:.1f}" if "hyperprior" in record else ""  # loss: their sum
            log.info("epoch %d: loss %.1f nll %.1f kl %.1f%s", epoch, record["loss"], record["nll"], record["kl"],
                     hyperprior)
        if self.bar is not None:
            self.bar.n = epoch
            self.bar.set_postfix(loss=f"{record['loss']:.4g}", nll=f"{record['nll']:.4g}", kl=f"{record['kl']:.4g}")
        if self.writer is not None:
            for key, value in record.items():
                if key != "epoch":
                    self.writer.add_scalar(f"train/{key}", value, epoch)
        if self.tracker is not None:
            self.tracker.log_epoch(record)

    def add_metrics(self, metrics: Dict[str, float], step: int, prefix: str = "test") -> None:
        """Final metrics as scalars at ``step``."""
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        self._stack.close()
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> "EpochReporter":
        if self.bar is not None:
            self._stack.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, *exc) -> None:
        self.close()
