"""``mnist``, ``fashion_mnist``, ``cifar10``: torchvision's data sets under ``root`` (``download=True`` fetches them),
official train/test split, normalised by the training set's mean and standard deviation (per channel)."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import torch
from torch.utils.data import TensorDataset

from .splits import DataSplits

#: torchvision's class of each data set.
TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def torchvision_images(name: str, root: str, download: bool = False, train: bool = True) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Images ``(N, C, H, W)`` in [0, 1], labels and the number of classes of a torchvision dataset."""
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_CLASSES[name])
    try:
        ds = cls(root, train=train, download=download)
    except (RuntimeError, OSError) as err:  # not there; or the download failed (URLError is an OSError)
        detail = " ".join(str(err).split())[:200]
        if download:
            raise FileNotFoundError(
                f"dataset {name!r} could not be downloaded to {Path(root).resolve()} ({type(err).__name__}: {detail}): "
                "check the network connection, or copy its files under data.root and set data.download=false"
            ) from None
        raise FileNotFoundError(
            f"dataset {name!r} was not found under {Path(root).resolve()} ({detail}); "
            "set data.download=true to fetch it, or data.root to where it is"
        ) from None
    data = torch.as_tensor(ds.data)
    data = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)  # (N, C, H, W)
    return data.float() / 255.0, torch.as_tensor(ds.targets, dtype=torch.long), len(ds.classes)


def load_torchvision(name: str, root: str, download: bool = False) -> DataSplits:
    """MNIST, FashionMNIST or CIFAR-10 from torchvision's on-disk files under ``root``."""
    x_tr, y_tr, num_classes = torchvision_images(name, root, download, train=True)
    x_te, y_te, _ = torchvision_images(name, root, download, train=False)
    mean = x_tr.mean(dim=(0, 2, 3), keepdim=True)
    std = x_tr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return DataSplits(
        name,
        TensorDataset((x_tr - mean) / std, y_tr),
        TensorDataset((x_te - mean) / std, y_te),
        tuple(x_tr.shape[1:]),
        num_classes,
        "classification",
        input_mean=mean,
        input_std=std,
    )
