"""Datasets as tensors, with fixed seeded splits, and fast minibatch loaders.

* ``digits``: scikit-learn's 1,797 real 8x8 handwritten digits (ships offline; the default),
  scaled by 1/16 to [0, 1], stratified 80/20 split with ``random_state=split_seed``.
* ``toy_regression``: 1-D regression, ``y = sin(3x) + 0.1 eps``, inputs on ``[-1, -0.35] U [0.35, 1]``
  (a gap in the middle, where a good posterior is uncertain).
* ``mnist``, ``fashion_mnist``, ``cifar10``: torchvision's datasets under ``root``
  (``download=True`` fetches them), official train/test split, normalised by the training set's
  mean and standard deviation (per channel).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

DATASETS = ("digits", "toy_regression", "mnist", "fashion_mnist", "cifar10")


@dataclass
class DataSplits:
    """Train and test sets of one dataset, and what a model needs to know about them."""

    name: str
    train: TensorDataset
    test: TensorDataset
    in_shape: Tuple[int, ...]
    num_outputs: int
    task: str  # "classification" or "regression"

    @property
    def num_train(self) -> int:
        return len(self.train)


def load_digits_splits(split_seed: int = 0, test_size: float = 0.2) -> DataSplits:
    """scikit-learn digits, ``train_test_split(X/16, y, test_size, random_state=split_seed, stratify=y)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x / 16.0, y, test_size=test_size, random_state=split_seed, stratify=y)

    def tensors(x, y):
        return TensorDataset(torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8), torch.tensor(y, dtype=torch.long))

    return DataSplits("digits", tensors(x_tr, y_tr), tensors(x_te, y_te), (1, 8, 8), 10, "classification")


def toy_regression_inputs(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` inputs drawn uniformly from ``[-1, -0.35] U [0.35, 1]``."""
    u = torch.rand(n, generator=generator) * 1.3 - 0.65
    return (u + 0.35 * u.sign()).reshape(-1, 1)


def toy_regression_target(x: torch.Tensor) -> torch.Tensor:
    """The noise-free regression function."""
    return torch.sin(3.0 * x[:, 0])


def load_toy_regression(num_train: int = 200, num_test: int = 200, noise: float = 0.1, split_seed: int = 0) -> DataSplits:
    """Synthetic 1-D regression with a gap in the inputs (seeded)."""
    g = torch.Generator().manual_seed(split_seed)

    def sample(n):
        x = toy_regression_inputs(n, g)
        return TensorDataset(x, toy_regression_target(x) + noise * torch.randn(n, generator=g))

    return DataSplits("toy_regression", sample(num_train), sample(num_test), (1,), 1, "regression")


_TORCHVISION = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}


def load_torchvision(name: str, root: str, download: bool = False) -> DataSplits:
    """MNIST, FashionMNIST or CIFAR-10 from torchvision's on-disk files under ``root``."""
    import torchvision

    cls = getattr(torchvision.datasets, _TORCHVISION[name])
    try:
        train, test = cls(root, train=True, download=download), cls(root, train=False, download=download)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"dataset {name!r} was not found under {Path(root).resolve()} ({err}); "
            "set data.download=true to fetch it, or data.root to where it is"
        ) from None

    def images(ds) -> torch.Tensor:
        data = torch.as_tensor(ds.data)
        data = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)  # (N, C, H, W)
        return data.float() / 255.0

    x_tr, x_te = images(train), images(test)
    mean = x_tr.mean(dim=(0, 2, 3), keepdim=True)
    std = x_tr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    y_tr, y_te = torch.as_tensor(train.targets, dtype=torch.long), torch.as_tensor(test.targets, dtype=torch.long)
    return DataSplits(
        name,
        TensorDataset((x_tr - mean) / std, y_tr),
        TensorDataset((x_te - mean) / std, y_te),
        tuple(x_tr.shape[1:]),
        len(train.classes),
        "classification",
    )


def load_data(name: str, root: str = "data", download: bool = False, split_seed: int = 0) -> DataSplits:
    """Load dataset ``name`` (one of :data:`DATASETS`)."""
    if name == "digits":
        return load_digits_splits(split_seed)
    if name == "toy_regression":
        return load_toy_regression(split_seed=split_seed)
    if name in _TORCHVISION:
        return load_torchvision(name, root, download)
    raise ValueError(f"data={name!r} is not known; choose one of {list(DATASETS)}")


def make_loader(dataset: TensorDataset, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader yielding whole ``(x, y)`` batches by one tensor index each (no per-item collation).

    Shuffling uses its own generator seeded with ``seed``: the batch order depends on nothing else.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size}: use a batch size >= 1")
    if shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, sampler=BatchSampler(sampler, int(batch_size), drop_last=False), batch_size=None)
