"""Checks of the data a library call is given: one error that names the problem and the fix, before any work.

The data are checked once, on the first batch (cheap: no pass over the whole loader): the loader can be iterated more than
once and has a length, the batch is a pair ``(x, y)`` of tensors, ``x`` has the model's dtype (or is integer,
for a network with an ``nn.Embedding``) and is finite, and ``y`` has one entry per example (a class index in
``0..C-1`` for a classification model, a number for a regression model). A later batch whose step fails (e.g. a
class index out of range) is checked then, and the error names it (``batch 2 of epoch 1``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Iterable, Tuple

import torch
from pyro import poutine
from torch import nn

#: Layers that take integer inputs (indices): a network holding one may be given integer inputs.
INDEX_LAYERS = (nn.Embedding, nn.EmbeddingBag)


def check_loader(loader: Iterable, argument: str = "loader") -> int:
    """The number of batches of ``loader``; an error unless it can be iterated once per epoch."""
    if isinstance(loader, torch.utils.data.Dataset) and not isinstance(loader, torch.utils.data.DataLoader):
        raise TypeError(f"{argument} is a {type(loader).__name__}, a dataset of single examples, not of batches: "
                        "pass pyro_bnn.make_loader(dataset, batch_size)")
    if isinstance(loader, Iterator):  # (not iter(loader): a DataLoader's iterator draws a seed from torch's RNG)
        raise TypeError(f"{argument} is an iterator ({type(loader).__name__}), which is spent after one pass: "
                        "pass a DataLoader (pyro_bnn.make_loader) or a list of (x, y) batches")
    try:
        num_batches = len(loader)
    except TypeError:
        raise TypeError(f"{argument} ({type(loader).__name__}) has no len(): pass a DataLoader "
                        "(pyro_bnn.make_loader) or a list of (x, y) batches") from None
    if num_batches == 0:
        raise ValueError(f"{argument} yields no batches: its dataset is empty (or smaller than a batch with "
                         "drop_last=True); pass a loader over at least one example")
    return num_batches


def first_batch(loader: Iterable, argument: str = "loader") -> Tuple[torch.Tensor, torch.Tensor]:
    """The first ``(x, y)`` of ``loader``, with an error naming ``argument`` if it is not such a pair."""
    for batch in loader:
        return check_pair(batch, argument)
    raise ValueError(f"{argument} yields no batches: its dataset is empty; pass a loader over at least one example")


def check_pair(batch, argument: str = "loader") -> Tuple[torch.Tensor, torch.Tensor]:
    """``batch`` as ``(x, y)``, if it is a pair of tensors (else the error names what it is)."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, torch.Tensor) for t in batch)):
        raise TypeError(f"{argument} must yield pairs (x, y) of tensors, got {_describe(batch)}: "
                        "wrap your tensors in a TensorDataset")
    return batch[0], batch[1]


def check_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, argument: str = "loader") -> None:
    """Check one batch against ``model`` (a :class:`~pyro_bnn.model.networks.BayesianModel`; others: the inputs only)."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is None:
        dtype = next((b.dtype for b in model.buffers() if b.is_floating_point()), torch.get_default_dtype())
    takes_indices = not x.is_floating_point() and any(isinstance(m, INDEX_LAYERS) for m in model.modules())
    if x.dtype != dtype and not takes_indices:
        raise TypeError(f"the inputs x of {argument} have dtype {x.dtype}, the model's weights {dtype}: "
                        f"convert them (x.to({dtype}), e.g. in the TensorDataset)")
    in_shape = getattr(model, "in_shape", None)
    if in_shape is not None and tuple(x.shape[1:]) != tuple(in_shape):
        raise ValueError(f"the inputs x of {argument} have shape {tuple(x.shape)}, the model takes (batch, "
                         f"{', '.join(map(str, in_shape))}): pick a model and data whose shapes agree")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"the inputs x of {argument} hold NaN or inf values: clean or impute the data first")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        hint = " (y.squeeze(1))" if y.dim() == 2 and y.shape[1] == 1 else ""
        raise ValueError(f"the targets y of {argument} have shape {tuple(y.shape)} for {x.shape[0]} inputs: "
                         f"pass one target per example, shape ({x.shape[0]},){hint}")
    likelihood = getattr(model, "likelihood", None)
    if getattr(likelihood, "task", None) == "classification":
        _check_labels(model, x, y, argument)
    elif getattr(likelihood, "task", None) == "regression":
        if not y.is_floating_point():
            raise TypeError(f"the targets y of {argument} have dtype {y.dtype}: a regression model needs "
                            "real-valued targets (y.float())")
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"the targets y of {argument} hold NaN or inf values: clean the data first")


def _check_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, argument: str) -> None:
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"the labels y of {argument} have dtype {y.dtype}: a classification model needs "
                        "integer class indices (y.long())")
    num_classes = _num_outputs(model, x)
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"the labels y of {argument} hold the class {bad}, but the model has {num_classes} "
                         f"outputs (classes 0..{num_classes - 1}): relabel the data to 0..C-1, or build the "
                         "model with more outputs")


@contextmanager
def changing_nothing(module: nn.Module, device: torch.device) -> Iterator[None]:
    """Run ``module`` inside without side effects: evaluation mode (no BatchNorm statistics updated, any batch
    size), no gradient, no Pyro effects, torch's RNG (``device``'s too) as it was; the modules' modes restored."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad(), poutine.block(), torch.random.fork_rng([device] if device.type == "cuda" else []):
            yield
    finally:
        for m, training in modes:
            m.training = training


def _num_outputs(model: nn.Module, x: torch.Tensor) -> int:
    """The network's outputs per example, from one example, changing nothing (:func:`changing_nothing`)."""
    with changing_nothing(model, x.device):
        return model.outputs(x[:1]).shape[-1]


def _describe(batch) -> str:
    if isinstance(batch, (tuple, list)):
        return f"a {type(batch).__name__} of {len(batch)} ({', '.join(type(t).__name__ for t in batch)})"
    return f"a {type(batch).__name__}"
