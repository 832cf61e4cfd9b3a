"""Data-parallel SVI on torch.distributed: K processes train one posterior.

Each process (rank) takes its shard of every minibatch (:func:`pyro_bnn.data.loaders.make_loader` with ``rank`` and
``world_size``: the minibatches of one process, each cut into K contiguous parts) and draws the same weight
noise (the same seed on every rank). Its loss is ``L_r = (N/B_r) sum_{n in shard r} -log p(y_n | x_n, w) + KL``.
After the backward pass one ``all_reduce`` sums ``B_r * grad L_r`` and ``B_r * (loss terms)`` over the ranks
(with ``B_r``), and every rank divides by ``B = sum_r B_r``::

    sum_r (B_r / B) * L_r = (N/B) sum_{n in the whole batch} -log p(y_n | x_n, w) + KL

the loss of one process on the whole minibatch, its KL counted once; so are the gradients (and every rank's
history). Every trained tensor takes part: the guide's (flat) means and log-scales and the model's point
estimates (a likelihood's noise scale, BatchNorm's affine parameters). gloo runs it on CPUs, NCCL on GPUs.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.distributed as dist

from ..data.loaders import ShardedBatches
from ..objectives.elbo import StepRecord


def world() -> tuple:
    """``(rank, world_size)`` of this process: ``(0, 1)`` without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class GradientAllReduce:
    """After each backward pass: the gradients and loss terms of the whole minibatch on every rank.

    :param parameters: the tensors an optimizer trains (the model's and the guide's).
    """

    def __init__(self, parameters: List[torch.Tensor]):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("distributed=True needs torch.distributed's process group: run under torchrun, or "
                               "call torch.distributed.init_process_group first")
        self.parameters = parameters

    def __call__(self, batch_size: int, record: StepRecord) -> StepRecord:
        """Replace every ``.grad`` by the whole minibatch's; returns the whole minibatch's ``record``."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.parameters]
        values = record.values.to(grads[0].dtype)
        weight = torch.tensor([float(batch_size)], dtype=grads[0].dtype, device=grads[0].device)
        flat = torch.cat([g.reshape(-1) for g in grads] + [values, torch.ones_like(weight)]) * weight
        dist.all_reduce(flat)
        flat = flat[:-1] / flat[-1]
        offset = 0
        for p, g in zip(self.parameters, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g)
            offset += g.numel()
        return StepRecord(record.keys, flat[offset:])

    @staticmethod
    def any(flag: bool, device: Optional[torch.device] = None) -> bool:
        """Whether ``flag`` is true on any rank (e.g. a signal received by one process: all stop together)."""
        value = torch.tensor([float(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


def shard_rows(loader) -> Optional[Tuple[int, int]]:
    """``(first row, size)`` in the whole batch of the part ``loader`` (a :func:`make_loader` with ``rank``) yielded
    last; None for another loader."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, ShardedBatches) and getattr(loader, "num_workers", 0) == 0:
        return sampler.rows
    return None


