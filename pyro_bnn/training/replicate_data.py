"""What each replicate of a batch (:mod:`pyro_bnn.training.replicates`) draws at random, from streams of its own: its
minibatches (its data, in its own order) and its noise (its weight draws). Each stream's state can be read per
replicate and put back, so that a checkpoint of a batch resumes it exactly
(:func:`~pyro_bnn.training.replicate_fit.fit_replicates`).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Sequence, Tuple

import torch

from ..batch_checks import check_loader, first_batch
from .state import sampler_generator


class ReplicateNoise:
    """A standard Normal draw of ``(R, ...)`` (call it with the shape) whose row ``r`` comes from a generator of its
    own seeded with ``seeds[r]``: replicate ``r`` draws the noise a run alone draws after
    ``pyro.set_rng_seed(seeds[r])``, whatever the other replicates' seeds."""

    def __init__(self, seeds: Sequence[int], device=None):
        # replicates of one seed draw the same stream: one generator for them, each draw made once and shared
        distinct = list(dict.fromkeys(int(seed) for seed in seeds))
        self.generators = [torch.Generator(device=device or "cpu").manual_seed(seed) for seed in distinct]
        self._of = [distinct.index(int(seed)) for seed in seeds]
        self._rows = torch.tensor(self._of, device=device)
        self._shared = len(distinct) < len(seeds)

    def __call__(self, shape: Tuple[int, ...]) -> torch.Tensor:
        draws = torch.empty((len(self.generators), *shape[1:]), device=self.generators[0].device)
        for generator, row in zip(self.generators, draws):
            torch.randn(shape[1:], generator=generator, out=row)
        return draws[self._rows] if self._shared else draws

    def signs(self, shape: Tuple[int, ...]) -> torch.Tensor:
        """Flipout's ±1 signs of ``(R, ...)``, row ``r`` from replicate ``r``'s generator (``torch.randint`` as a run
        alone draws them)."""
        draws = torch.stack([torch.randint(0, 2, shape[1:], generator=g, device=g.device) for g in self.generators])
        return (draws[self._rows] if self._shared else draws) * 2 - 1

    def state(self, index: int) -> torch.Tensor:
        """Replicate ``index``'s generator state."""
        return self.generators[self._of[index]].get_state()

    def set_states(self, states: Sequence[torch.Tensor]) -> None:
        """Put back each replicate's :meth:`state` (replicates of one seed share theirs: the first one's is taken)."""
        for generator, index in zip(self.generators, [self._of.index(g) for g in range(len(self.generators))]):
            generator.set_state(states[index])


def replicate_draw(seeds: Sequence[int], device=None) -> ReplicateNoise:
    """:class:`ReplicateNoise` of ``seeds``: row ``r`` of each draw from a generator seeded with ``seeds[r]``."""
    return ReplicateNoise(seeds, device)


class ZippedLoaders:
    """The replicates' minibatches from one loader each (any loader :func:`~pyro_bnn.training.loop.fit` takes), their
    ``r``-th batches stacked into one ``(x, y)`` of shape ``(R, B, ...)``, ``(R, B)``."""

    def __init__(self, loaders: Sequence):
        self.loaders = list(loaders)
        steps = [check_loader(loader, f"loaders[{index}]") for index, loader in enumerate(self.loaders)]
        if len(set(steps)) > 1:
            raise ValueError(f"the loaders yield {steps} batches per epoch: replicates train one step together, so each "
                             "loader must yield as many batches (training splits of one size, one batch size)")
        self.steps, self.replicates = steps[0], len(self.loaders)
        self._generators = [sampler_generator(loader) for loader in self.loaders]

    def __len__(self) -> int:
        return self.steps

    def first(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Replicate ``index``'s first batch (for the checks)."""
        return first_batch(self.loaders[index], f"loaders[{index}]")

    def order_state(self, index: int) -> Dict[str, Any]:
        """What decides replicate ``index``'s next epoch's order: its sampler's generator, and torch's stream (a
        loader without a generator of its own shuffles with it)."""
        generator = self._generators[index]
        return {"torch": torch.get_rng_state(), "sampler": generator.get_state() if generator is not None else None}

    def set_order_states(self, states: Sequence[Dict[str, Any]]) -> None:
        """Put back each replicate's :meth:`order_state` (torch's stream is one: replicate 0's is taken)."""
        torch.set_rng_state(states[0]["torch"])
        for generator, state in zip(self._generators, states):
            if generator is not None and state["sampler"] is not None:
                generator.set_state(state["sampler"])

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        for batches in zip(*self.loaders):
            yield torch.stack([batch[0] for batch in batches]), torch.stack([batch[1] for batch in batches])


class StackedBatches:
    """The replicates' minibatches drawn together: replicate ``r``'s training set ``datasets[r]`` in an order of its
    own each epoch (a permutation from a generator seeded with ``seeds[r]``), cut into batches of ``batch_size``; one
    gather a step for all replicates (a list of loaders costs a loader's step per replicate). The data sets must have
    one size and shape.
    """

    def __init__(self, datasets: Sequence, batch_size: int, seeds: Sequence[int]):
        sizes = {len(dataset) for dataset in datasets}
        if len(sizes) > 1:
            raise ValueError(f"the training sets hold {[len(d) for d in datasets]} examples: replicates train one step "
                             "together, so their training sets must be of one size")
        if len(seeds) != len(datasets):
            raise ValueError(f"{len(seeds)} seeds for {len(datasets)} data sets: pass one per replicate")
        self.x = torch.stack([dataset.tensors[0] for dataset in datasets])
        self.y = torch.stack([dataset.tensors[1] for dataset in datasets])
        self.batch_size, self.size = int(batch_size), sizes.pop()
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self._rows = torch.arange(len(datasets)).unsqueeze(1)
        self.replicates = len(datasets)

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def first(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.x[index, :self.batch_size], self.y[index, :self.batch_size]

    def order_state(self, index: int) -> torch.Tensor:
        """Replicate ``index``'s order generator (what decides its next epoch's order)."""
        return self.generators[index].get_state()

    def set_order_states(self, states: Sequence[torch.Tensor]) -> None:
        """Put back each replicate's :meth:`order_state`."""
        for generator, state in zip(self.generators, states):
            generator.set_state(state)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        order = torch.stack([torch.randperm(self.size, generator=g) for g in self.generators])
        for start in range(0, self.size, self.batch_size):
            rows = order[:, start:start + self.batch_size]
            yield self.x[self._rows, rows], self.y[self._rows, rows]


def stacked(loaders) -> "StackedBatches | ZippedLoaders":
    """``loaders`` as the replicates' batches: a :class:`StackedBatches` as it is, a list of loaders zipped."""
    return loaders if isinstance(loaders, StackedBatches) else ZippedLoaders(loaders)


__all__: List[str] = ["ReplicateNoise", "replicate_draw", "ZippedLoaders", "StackedBatches"]
