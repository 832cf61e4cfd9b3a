"""The splits of a data set (:class:`DataSplits`) and the cuts made of them: held-out classes, a validation part of
the training split, its first examples."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence, Tuple

import torch
from torch.utils.data import TensorDataset


@dataclass(frozen=True)
class DataSplits:
    """Train and test sets of one dataset, and what a model needs to know about them (immutable: :func:`hold_out`,
    :func:`validation_part` and :func:`first_examples` return new splits)."""

    name: str
    train: TensorDataset
    test: TensorDataset
    in_shape: Tuple[int, ...]
    num_outputs: int
    task: str  # "classification" or "regression"
    #: per-channel input normalisation applied to raw [0, 1] images (None: inputs used as loaded)
    input_mean: Optional[torch.Tensor] = None
    input_std: Optional[torch.Tensor] = None
    #: test examples of held-out classes (see :func:`hold_out`)
    heldout: Optional[TensorDataset] = None
    #: regression targets standardised as ``(y - target_mean) / target_std`` (1 and 0: used as loaded)
    target_mean: float = 0.0
    target_std: float = 1.0
    #: the loader that made these splits (:data:`DATASETS`) and its split, to load them again
    loader: str = ""
    split: int = 0

    @property
    def num_train(self) -> int:
        return len(self.train)


def hold_out(data: DataSplits, classes: Sequence[int]) -> DataSplits:
    """Remove ``classes`` from the training and test sets; their test examples become ``data.heldout``."""
    classes = sorted({int(c) for c in classes})
    bad = [c for c in classes if not 0 <= c < data.num_outputs]
    if data.task != "classification" or bad or len(classes) >= data.num_outputs:
        raise ValueError(f"data.holdout_classes={classes}: hold out some (not all) of the classes 0..."
                         f"{data.num_outputs - 1} of a classification dataset")

    def split(ds: TensorDataset, keep: bool) -> TensorDataset:
        x, y = ds.tensors
        mask = torch.isin(y, torch.tensor(classes)) != keep
        return TensorDataset(x[mask], y[mask])

    return replace(data, train=split(data.train, keep=True), test=split(data.test, keep=True),
                   heldout=split(data.test, keep=False))


def validation_part(data: DataSplits, validation: float) -> DataSplits:
    """The last ``validation`` share of the training split in place of the test split (a validation set)."""
    x, y = data.train.tensors
    cut = len(x) - int(round(validation * len(x)))
    if not 1 <= cut < len(x):
        raise ValueError(f"data.validation={validation} leaves {cut} of {len(x)} training examples: use e.g. 0.2")
    return replace(data, train=TensorDataset(x[:cut], y[:cut]), test=TensorDataset(x[cut:], y[cut:]))


def first_examples(data: DataSplits, subset: int) -> DataSplits:
    """The first ``subset`` training examples only (the split is already shuffled)."""
    if subset > len(data.train):
        raise ValueError(f"data.subset={subset} is more than the {len(data.train)} training examples of {data.name}: "
                         "use 0 (all of them) or a smaller subset")
    return replace(data, train=TensorDataset(*(t[: int(subset)] for t in data.train.tensors)))


__all__ = ["DataSplits"]
