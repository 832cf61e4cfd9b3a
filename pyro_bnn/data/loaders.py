"""Minibatches of a data set: :func:`make_loader`, and the part of each batch one process of a data-parallel run
holds (:class:`ShardedBatches`)."""

from __future__ import annotations

from numbers import Integral
from typing import Optional, Tuple

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler, TensorDataset

from ..checks import ArgumentError, check_count


class ShardedBatches(Sampler):
    """Part ``rank`` of each batch of ``batches`` (a BatchSampler over ``num_examples``), cut into ``world_size``
    contiguous near-equal parts."""

    def __init__(self, batches: BatchSampler, num_examples: int, rank: int, world_size: int):
        last = num_examples % batches.batch_size or batches.batch_size
        if min(batches.batch_size, last) < world_size:
            raise ValueError(f"a batch of {min(batches.batch_size, last)} examples cannot be shared by {world_size} "
                             f"processes (batch_size={batches.batch_size}, {num_examples} examples): pick a batch "
                             f"size whose batches, the last one included, hold at least {world_size}")
        if not 0 <= rank < world_size:
            raise ArgumentError("rank", rank, fix=f"use 0 .. world_size - 1 = {world_size - 1}")
        self.batches, self.rank, self.world_size = batches, rank, world_size
        #: the shuffling generator, where a checkpoint finds it (:class:`~pyro_bnn.training.state.TrainingState`)
        self.generator = getattr(batches.sampler, "generator", None)
        #: ``(first row, size)`` of the whole batch whose part was yielded last (per-example noise reads it)
        self.rows: Optional[Tuple[int, int]] = None

    def __iter__(self):
        for batch in self.batches:
            n = len(batch)
            start = n * self.rank // self.world_size
            self.rows = (start, n)
            yield batch[start: n * (self.rank + 1) // self.world_size]

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(dataset: TensorDataset, batch_size: int, shuffle: bool = False, seed: int = 0, rank: int = 0,
                world_size: int = 1) -> DataLoader:
    """A DataLoader yielding whole ``(x, y)`` batches by one tensor index each (no per-item collation).

    Shuffling uses its own generator seeded with ``seed``: the batch order depends on nothing else.
    With ``world_size`` K > 1 (data-parallel training, :mod:`pyro_bnn.training.distributed`) it yields the part ``rank``
    of each of those batches, cut into K contiguous near-equal parts: over the ranks, the same minibatches.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset is a {type(dataset).__name__}, not a torch Dataset: pass "
                        "TensorDataset(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y))")
    batch_size, world_size = check_count(batch_size, "batch_size"), check_count(world_size, "world_size")
    if isinstance(rank, bool) or not (isinstance(rank, Integral) and 0 <= rank < world_size):
        raise ArgumentError("rank", rank, fix=f"use 0 .. world_size - 1 = {world_size - 1}")
    if shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    batches = BatchSampler(sampler, int(batch_size), drop_last=False)
    if int(world_size) > 1:
        batches = ShardedBatches(batches, len(dataset), int(rank), int(world_size))
    return DataLoader(dataset, sampler=batches, batch_size=None)


__all__ = ["make_loader"]
