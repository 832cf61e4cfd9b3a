""":func:`fit_replicates`: :func:`~pyro_bnn.training.loop.fit` for a batch of replicates
(:class:`~pyro_bnn.training.replicates.Replicates`): one Adam step a minibatch for all, each replicate with its own
data and order, its own noise, its own KL weight; checkpoints that hold each replicate's part on its own; a
replicate whose loss goes bad is dropped and named while the others train on.

Each replicate's checkpoint (:meth:`BatchRun.snapshot`) holds what it alone needs to go on: its position (epoch and
step, shared by the batch), its means and log-scales, its model's own parameters (a learned noise sd), its Adam
moments, the learning-rate schedule's state, its order and noise generators' states, its running sums and its
history. The replicates' checkpoints restore a batch (:meth:`BatchRun.restore`: any replicates, in any grouping,
whose checkpoints stand at one position), and each goes on exactly as it would have in the batch it left: its
gradients and Adam's update are its own (see :mod:`~pyro_bnn.training.replicates`).
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pyro
import torch

from ..batch_checks import check_batch
from .loop import Hooks, TrainingInterrupted
from .loss_monitor import EXPLOSION
from .replicate_data import ReplicateNoise, stacked
from .replicates import Replicates
from .schedules import Schedule, as_kl_weight
from .step import lr_scheduler, optimizer

#: The ``format`` of a replicate's checkpoint (:meth:`BatchRun.snapshot`).
REPLICATE_STATE = "pyro_bnn.replicate"


class ReplicatesFailed(FloatingPointError):
    """The loss of some replicates went bad (NaN, inf, or exploded); the others trained to the end and their pairs
    hold their posteriors.

    :ivar failed: ``{index: what went bad}``, per failed replicate.
    :ivar histories: every replicate's history (a failed one's ends at its last good epoch).
    """

    def __init__(self, failed: Dict[int, str], histories: List[List[Dict[str, float]]]):
        self.failed, self.histories = failed, histories
        named = "; ".join(f"replicate {index}: {message}" for index, message in failed.items())
        super().__init__(f"{named} (the other replicates trained to the end: each replicate's gradient is its own)")


class BatchRun:
    """Where a batch of replicates stands: its position, each replicate's history and running sums, the random
    streams, the optimizer; :meth:`snapshot` and :meth:`restore` per replicate."""

    def __init__(self, replicates: Replicates, batches, noise: ReplicateNoise, adam: torch.optim.Optimizer,
                 scheduler):
        self.replicates, self.batches, self.noise, self.adam, self.scheduler = replicates, batches, noise, adam, scheduler
        self.epoch, self.step, self.in_epoch = 0, 0, False
        self.histories: List[List[Dict[str, float]]] = [[] for _ in range(replicates.size)]
        self.sums: Optional[torch.Tensor] = None  # (R, K): the epoch's sums of the steps' records so far
        self.first: Optional[torch.Tensor] = None  # (R,): each replicate's first step's loss
        self.failed: Dict[int, str] = {}
        self._start = time.perf_counter()
        self._order = self._order_states()
        self._skip = 0

    def _order_states(self) -> List[Any]:
        return [self.batches.order_state(index) for index in range(self.replicates.size)]

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def batches_of(self, epoch: int) -> Iterator[Tuple[int, torch.Tensor, torch.Tensor]]:
        """``(step, x, y)`` of ``epoch``; a restored epoch replays its order and skips the steps already trained."""
        skip, self._skip = self._skip, 0
        self.batches.set_order_states(self._order)
        self.epoch = epoch
        for step, (x, y) in enumerate(self.batches):
            self.in_epoch = True
            if step < skip:
                continue
            self.step = step
            yield step, x, y

    def add(self, record: torch.Tensor) -> None:
        """Add one step's records ``(R, K)`` to the epoch's sums (on the device)."""
        if self.first is None:
            self.first = record[:, 0].cpu()
        self.sums = record if self.sums is None else self.sums + record
        self.step += 1

    def end_epoch(self, num_steps: int, keys: List[str], extras: List[Dict[str, float]]) -> None:
        """Close the epoch: each replicate's record appended to its history, or the replicate marked failed."""
        means = (self.sums / num_steps).cpu()
        for index, history in enumerate(self.histories):
            if index in self.failed:
                continue
            row = dict(zip(keys, means[index].tolist()))
            problem = _bad_loss(row, float(self.first[index]), self.epoch)
            if problem is not None:
                self.failed[index] = problem
                continue
            history.append({"epoch": self.epoch + 1, **row, **extras[index], "time_s": self.elapsed})
        self.epoch, self.step, self.sums, self.in_epoch = self.epoch + 1, 0, None, False
        self._order = self._order_states()

    def snapshot(self) -> List[Optional[Dict[str, Any]]]:
        """Each replicate's checkpoint (plain tensors and numbers, for :func:`torch.save`); None for a failed one."""
        replicates, adam = self.replicates, self.adam
        rows = []
        for index, (model, _) in enumerate(replicates.pairs):
            if index in self.failed:
                rows.append(None)
                continue
            rows.append({
                "format": REPLICATE_STATE, "replicates": replicates.size, "epoch": self.epoch, "step": self.step,
                "in_epoch": self.in_epoch, "elapsed": self.elapsed, "history": list(self.histories[index]),
                "sums": self.sums[index].detach().cpu().clone() if self.sums is not None else None,
                "first_loss": float(self.first[index]) if self.first is not None else None,
                "loc": replicates.loc[index].detach().clone(), "log_scale": replicates.log_scale[index].detach().clone(),
                "model": {key: value.detach().clone() for key, value in model.state_dict().items()},
                "adam": {"lr": adam.param_groups[0]["lr"],  # as the schedule set it
                         "loc": _row(adam.state.get(replicates.loc), index),
                         "log_scale": _row(adam.state.get(replicates.log_scale), index),
                         "own": [_copy(adam.state.get(p)) for p in replicates.own_parameters(index)]},
                "scheduler": self.scheduler.state_dict(),
                "noise": self.noise.state(index), "order": self._order[index],
            })
        return rows

    @torch.no_grad()
    def restore(self, states: Sequence[Dict[str, Any]]) -> None:
        """Continue from each replicate's :meth:`snapshot` (one per replicate, all at one position)."""
        replicates = self.replicates
        if len(states) != replicates.size:
            raise ValueError(f"{len(states)} checkpoints for {replicates.size} replicates: pass one per replicate")
        for index, state in enumerate(states):
            if not isinstance(state, dict) or state.get("format") != REPLICATE_STATE:
                raise ValueError(f"states[{index}] is not a replicate's checkpoint (BatchRun.snapshot writes them)")
        positions = {(state["epoch"], state["step"], state["in_epoch"]) for state in states}
        if len(positions) > 1:
            raise ValueError(f"the checkpoints stand at {sorted(positions)} (epoch, step, inside the epoch): a batch "
                             "resumes replicates that stopped at one position (resume the others in their own batch)")
        first = states[0]
        self.epoch, self.step, self.in_epoch = first["epoch"], first["step"], first["in_epoch"]
        self._skip = self.step if self.in_epoch else 0
        self._start = time.perf_counter() - max(state["elapsed"] for state in states)
        self.histories = [list(state["history"]) for state in states]
        if self.in_epoch and first["sums"] is not None:
            self.sums = torch.stack([state["sums"] for state in states]).to(replicates.loc.device)
        if first["first_loss"] is not None:
            self.first = torch.tensor([state["first_loss"] for state in states])
        replicates.loc.copy_(torch.stack([state["loc"] for state in states]))
        replicates.log_scale.copy_(torch.stack([state["log_scale"] for state in states]))
        for (model, _), state in zip(replicates.pairs, states):
            model.load_state_dict(state["model"])
        self._restore_adam(states)
        self.scheduler.load_state_dict(first["scheduler"])
        self.noise.set_states([state["noise"] for state in states])
        self._order = [state["order"] for state in states]

    def _restore_adam(self, states: Sequence[Dict[str, Any]]) -> None:
        if states[0]["adam"]["loc"] is None:  # stopped before the first step: Adam has no state, lr its first
            return
        saved = self.adam.state_dict()
        saved["param_groups"][0]["lr"] = states[0]["adam"]["lr"]
        stacked_rows = {key: {"step": states[0]["adam"][key]["step"],
                              **{moment: torch.stack([state["adam"][key][moment] for state in states])
                                 for moment in ("exp_avg", "exp_avg_sq")}} for key in ("loc", "log_scale")}
        entries = [stacked_rows["loc"], stacked_rows["log_scale"]]
        entries += [own for state in states for own in state["adam"]["own"]]
        saved["state"] = {number: entry for number, entry in enumerate(entries) if entry is not None}
        self.adam.load_state_dict(saved)


def _row(state: Optional[Dict[str, torch.Tensor]], index: int) -> Optional[Dict[str, torch.Tensor]]:
    """Replicate ``index``'s part of Adam's state of a stacked parameter (its step count is the batch's)."""
    if not state:
        return None
    return {"step": state["step"].clone(), "exp_avg": state["exp_avg"][index].clone(),
            "exp_avg_sq": state["exp_avg_sq"][index].clone()}


def _copy(state: Optional[Dict[str, torch.Tensor]]) -> Optional[Dict[str, torch.Tensor]]:
    return {key: value.clone() for key, value in state.items()} if state else None


def _bad_loss(row: Dict[str, float], first: float, epoch: int) -> Optional[str]:
    """What went bad in an epoch's mean terms ``row`` (None if nothing): a loss that is not finite, or one that
    exploded to :data:`~pyro_bnn.training.loss_monitor.EXPLOSION` times the replicate's first step's."""
    loss, advice = row["loss"], "lower the learning rate or the initial scale of this replicate"
    if math.isfinite(loss) and abs(loss) <= EXPLOSION * max(abs(first), 1.0):
        return None
    if math.isfinite(loss):
        return f"the loss exploded to {loss:.3g} in epoch {epoch + 1} (it was {first:.3g} at the first step): {advice}"
    layers = [key[3:] for key, value in row.items() if key.startswith("kl.") and not math.isfinite(value)]
    if not math.isfinite(row["nll"]):
        where = "the NLL"
    elif layers:
        where = f"the KL of layer(s) {layers}"
    elif not math.isfinite(row["kl"]):
        where = "the KL"
    else:
        where = "the hyperprior's NLL of the learned prior scales"
    return f"the loss became {loss} in epoch {epoch + 1}: {where} is not finite; {advice}"


def fit_replicates(replicates: Replicates, loaders, schedule: Optional[Schedule] = None,
                   kl_weights: Optional[Sequence] = None, seeds: Optional[Sequence[int]] = None,
                   hooks: Optional[Hooks] = None, states: Optional[Sequence[Dict[str, Any]]] = None
                   ) -> List[List[Dict[str, float]]]:
    """Train the replicates as one: each epoch, replicate ``r`` steps through ``loaders[r]`` (its data, its order; or
    ``loaders`` is a :class:`~pyro_bnn.training.replicate_data.StackedBatches`),
    with its own KL weight ``kl_weights[r]`` (a number or a :class:`~pyro_bnn.training.schedules.KLWeight`; None: 1,
    the exact ELBO) and its own noise (:class:`~pyro_bnn.training.replicate_data.ReplicateNoise` of ``seeds``; None:
    0, 1, ...), all on ``schedule``'s epochs and learning rate. Replicate ``r`` then takes the steps
    :func:`~pyro_bnn.training.loop.fit` takes with its pair alone after ``pyro.set_rng_seed(seeds[r])``, to float
    rounding, where its loader draws nothing from torch's random stream (a list of batches; a DataLoader draws a seed
    from it at every pass, so alone its noise moves). Afterwards each pair holds its posterior
    (:meth:`~pyro_bnn.training.replicates.Replicates.write_back`).

    :param Hooks hooks: ``callback`` is called after each epoch with the replicates' records of that epoch (None for
        a failed replicate); ``on_checkpoint`` with each replicate's checkpoint (:meth:`BatchRun.snapshot`) after
        every epoch (where ``checkpoint_due`` says so) and when stopping; ``should_stop`` is polled at every step boundary (then
        :class:`~pyro_bnn.training.loop.TrainingInterrupted` is raised, after the checkpoint).
    :param states: the replicates' checkpoints given to ``on_checkpoint`` earlier (one per replicate, in order): the
        batch resumes exactly where they stopped.
    :return: each replicate's history, one record per epoch, as :func:`~pyro_bnn.training.loop.fit` returns it for one
        (``epoch, loss, nll, kl, hyperprior, kl.<layer>..., kl_weight, prior_scale.<site>..., time_s``; the time is the
        batch's).
    :raises ReplicatesFailed: after training, naming the replicates whose loss went bad (NaN, inf, or exploded to
        10^4 times its first step's; checked every epoch); the others trained to the end. Raised at once when all did.
    """
    schedule = schedule or Schedule()
    hooks = hooks or Hooks()
    size = replicates.size
    batches = stacked(loaders)
    if batches.replicates != size:
        raise ValueError(f"data for {batches.replicates} replicates, and {size} replicates: pass one loader per "
                         "replicate")
    kl_weights = [None] * size if kl_weights is None else list(kl_weights)
    if len(kl_weights) != size:
        raise ValueError(f"{len(kl_weights)} KL weights for {size} replicates: pass one per replicate (or None)")
    num_steps = len(batches)
    for index, (model, _) in enumerate(replicates.pairs):
        check_batch(model, *batches.first(index), argument=f"loaders[{index}]")
    seeds = list(range(size)) if seeds is None else list(seeds)
    if len(seeds) != size:
        raise ValueError(f"{len(seeds)} seeds for {size} replicates: pass one per replicate (or None)")
    device = replicates.loc.device
    weights = [as_kl_weight(w).over(int(schedule.epochs)) for w in kl_weights]
    adam = optimizer(replicates.parameters(), schedule.lr)
    run = BatchRun(replicates, batches, ReplicateNoise(seeds, device), adam,
                   lr_scheduler(adam, schedule.lr_schedule, int(schedule.epochs) * num_steps))
    if states is not None:
        run.restore(states)
    keys, layers = replicates.record_keys()
    with pyro.validation_enabled(False):  # as fit trains (MeanFieldELBO(validate=False)): a bad loss is named per epoch
        for epoch in range(run.epoch, int(schedule.epochs)):
            for step, x, y in run.batches_of(epoch):
                if hooks.should_stop is not None and hooks.should_stop():
                    if hooks.on_checkpoint is not None:
                        hooks.on_checkpoint(run.snapshot())
                    raise TrainingInterrupted(epoch, step)
                x, y = x.to(device), y.to(device)
                betas = torch.tensor([w(epoch, step, num_steps) for w in weights]).to(replicates.loc)
                terms = replicates.terms(x, y, run.noise)
                adam.zero_grad(set_to_none=True)
                (terms.nll + betas * terms.kl).sum().backward()
                adam.step()
                run.scheduler.step()
                run.add(terms.record(layers))
            scales = replicates.learned_prior_scales()
            run.end_epoch(num_steps, keys, [{"kl_weight": w.epoch_weight(epoch), **s} for w, s in zip(weights, scales)])
            if len(run.failed) == size:
                raise ReplicatesFailed(run.failed, run.histories)
            hooks.epoch_checkpoint(run.snapshot)
            if hooks.callback is not None:
                hooks.callback([None if index in run.failed else history[-1]
                                for index, history in enumerate(run.histories)])
    replicates.write_back([index for index in range(size) if index not in run.failed])
    if run.failed:
        raise ReplicatesFailed(run.failed, run.histories)
    return run.histories


__all__ = ["fit_replicates", "BatchRun", "ReplicatesFailed", "REPLICATE_STATE"]
