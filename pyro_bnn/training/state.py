"""Where a run of :func:`pyro_bnn.fit` stands, as a value a checkpoint can hold and a new run can resume.

:class:`TrainingState` keeps the epoch and step, the running sums of the epoch's terms, the history,
the elapsed time, and the random state that decides what comes next: torch's RNG (weight noise, and
the batch order of a loader that shuffles with it) and the sampler's own generator where it has one.
A snapshot is taken either inside an epoch (at a step boundary, after the loader's iterator has drawn
from torch's RNG) or between epochs (before the next epoch's iterator draws): it says which, so that
resuming from either repeats the same draws.
:meth:`~TrainingState.snapshot` turns all that (with the model, guide, optimizer and scheduler states)
into plain tensors and numbers for :func:`torch.save`; :meth:`~TrainingState.restore` puts it back, and
:meth:`~TrainingState.batches` then replays the interrupted epoch's shuffling, skips the batches already
trained on and resumes the noise exactly, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import time
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import nn

from ..objectives.elbo import StepRecord
from .loss_monitor import LossMonitor


def sampler_generator(loader) -> Optional[torch.Generator]:
    """The generator a (batch) sampler of ``loader`` shuffles with, if it has its own."""
    for obj in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        for candidate in (obj, getattr(obj, "sampler", None)):
            if isinstance(getattr(candidate, "generator", None), torch.Generator):
                return candidate.generator
    return None


class TrainingState:
    """The state of one training run over ``loader``.

    :param modules: ``{"model": ..., "guide": ..., "optimizer": ..., "scheduler": ...}``: objects with
        ``state_dict()`` / ``load_state_dict()``, saved and restored with the run.
    :param device: where the weight noise is drawn (its CUDA RNG is saved too).
    :param sync: :class:`~pyro_bnn.training.distributed.GradientAllReduce` in a data-parallel run, else None.
    """

    def __init__(self, modules: Dict[str, nn.Module], loader: Iterable, device: torch.device, sync=None):
        self.modules = modules
        self.device = device
        self.generator = sampler_generator(loader)
        self.epoch, self.step = 0, 0
        self.sums: Optional[StepRecord] = None  # the epoch's sums of its steps' records so far
        self.history: List[Dict[str, float]] = []
        #: Checks the loss terms every few steps; its ``first`` (the first step's terms) is saved with the state.
        self.monitor = LossMonitor()
        self.sync = sync
        self._start = time.perf_counter()
        self._epoch_start = self._shuffle_state()
        self._in_epoch = False  # the epoch's loader iterator has been created (and drew from torch's RNG)
        self._resume: Optional[Dict] = None

    def _shuffle_state(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """What decides an epoch's batch order: torch's RNG and the sampler's own generator."""
        return torch.get_rng_state(), self.generator.get_state() if self.generator is not None else None

    @property
    def elapsed(self) -> float:
        """Seconds of training so far, over every run that resumed this one."""
        return time.perf_counter() - self._start

    def snapshot(self) -> Dict:
        """The state as plain tensors and numbers (for :func:`torch.save`)."""
        return {
            "epoch": self.epoch, "step": self.step, "history": list(self.history),
            "sums": self.sums.as_dict() if self.sums is not None else {},
            **{name: module.state_dict() for name, module in self.modules.items()},
            "rng": torch.get_rng_state(), "rng_epoch_start": self._epoch_start[0],
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "sampler_epoch_start": self._epoch_start[1], "elapsed": self.elapsed, "first_terms": self.monitor.first,
            "in_epoch": self._in_epoch,
        }

    def restore(self, saved: Dict) -> None:
        """Continue from a :meth:`snapshot`: the next :meth:`batches` resumes at its epoch and step."""
        for name, module in self.modules.items():
            module.load_state_dict(saved[name])
        self.epoch, self.step = saved["epoch"], saved["step"]
        self.sums = StepRecord.of(saved["sums"]) if saved["sums"] else None
        self.history = list(saved["history"])
        self.monitor.first = saved.get("first_terms")
        self._start = time.perf_counter() - saved["elapsed"]
        self._resume = saved

    def batches(self, epoch: int, loader: Iterable) -> Iterator[Tuple[int, torch.Tensor, torch.Tensor]]:
        """``(step, x, y)`` of ``epoch``; the epoch of a restored state replays its order from its step on.

        A state snapshotted inside an epoch replays that epoch's shuffling from its start, skips the steps already
        trained and restores the noise at the first step left; one snapshotted between epochs (an epoch's end)
        restores the random state as it was there, before the next epoch's loader draws from it.
        """
        resume, self._resume = self._resume, None
        inside = resume is not None and resume.get("in_epoch", True)
        if resume is not None:
            torch.set_rng_state(resume["rng_epoch_start"] if inside else resume["rng"])
            if self.generator is not None and resume["sampler_epoch_start"] is not None:
                self.generator.set_state(resume["sampler_epoch_start"])
            if not inside:
                self._set_cuda_rng(resume)
        self.epoch, skip = epoch, self.step if inside else 0
        self._epoch_start = self._shuffle_state()
        for step, (x, y) in enumerate(loader):
            self._in_epoch = True
            if step < skip:
                continue
            if inside and step == skip:
                torch.set_rng_state(resume["rng"])
                self._set_cuda_rng(resume)
            self.step = step
            yield step, x, y

    def _set_cuda_rng(self, saved: Dict) -> None:
        if saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"], self.device)

    def add(self, record: StepRecord) -> None:
        """Add one step's terms to the epoch's sums (on the device: no host sync)."""
        self.sums = record if self.sums is None else StepRecord(record.keys, self.sums.values + record.values)

    def end_epoch(self, num_steps: int, extra: Dict[str, float]) -> Dict[str, float]:
        """Close the epoch: its record (the terms' means over its steps, then ``extra``), appended to the history."""
        sums = dict(zip(self.sums.keys, self.sums.values.tolist())) if self.sums is not None else {}
        record = {"epoch": self.epoch + 1, **{k: v / num_steps for k, v in sums.items()}, **extra,
                  "time_s": self.elapsed}
        self.history.append(record)
        self.epoch, self.step, self.sums = self.epoch + 1, 0, None
        self._epoch_start = self._shuffle_state()
        self._in_epoch = False
        return record
