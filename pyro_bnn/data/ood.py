"""Out-of-distribution sets (:func:`load_ood`), for the uncertainty metrics of a classifier: ``rotated`` (the test
images turned by 90 degrees), ``heldout`` (test examples of the classes in ``holdout_classes``, removed from training
and test), ``mnist`` / ``fashion_mnist`` (that torchvision test set, normalised like the training data)."""

from __future__ import annotations

from typing import Optional

import torch
from torch.utils.data import TensorDataset

from .splits import DataSplits
from .torchvision_sets import torchvision_images

OOD_SETS = ("none", "rotated", "heldout", "mnist", "fashion_mnist")


def load_ood(data: DataSplits, name: str, root: str = "data", download: bool = False) -> Optional[TensorDataset]:
    """The out-of-distribution set ``name`` (one of :data:`OOD_SETS`) for ``data``; None for ``"none"``."""
    if name == "none":
        return None
    if data.task != "classification":
        raise ValueError(f"data.ood={name!r}: out-of-distribution sets are for classification; use data.ood=none")
    if name == "rotated":
        if len(data.in_shape) != 3:
            raise ValueError(f"data.ood=rotated needs image inputs; {data.name} has inputs of shape {data.in_shape}")
        x, y = data.test.tensors
        return TensorDataset(torch.rot90(x, 1, dims=(2, 3)).contiguous(), y)
    if name == "heldout":
        if data.heldout is None:
            raise ValueError("data.ood=heldout needs held-out classes: set data.holdout_classes, e.g. [8,9]")
        return data.heldout
    if name in ("mnist", "fashion_mnist"):
        if data.in_shape != (1, 28, 28) or name == data.name:
            raise ValueError(f"data.ood={name} is a set of 1x28x28 images other than the training data; "
                             f"{data.name} has inputs of shape {data.in_shape}: choose another data.ood")
        try:
            x, y, _ = torchvision_images(name, root, download, train=False)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"the out-of-distribution set: {err}; or choose another data.ood, e.g. rotated") from None
        return TensorDataset((x - data.input_mean) / data.input_std, y)
    raise ValueError(f"data.ood={name!r} is not known; choose one of {list(OOD_SETS)}")

__all__ = ["load_ood"]
