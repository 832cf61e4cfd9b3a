"""Datasets as tensors, with fixed seeded splits, and fast minibatch loaders.

* ``digits``: scikit-learn's 1,797 real 8x8 handwritten digits (ships offline; the default),
  scaled by 1/16 to [0, 1], stratified 80/20 split with ``random_state=split_seed``.
* ``toy_regression``: 1-D regression, ``y = sin(3x) + 0.1 eps``, inputs on ``[-1, -0.35] U [0.35, 1]``
  (a gap in the middle, where a good posterior is uncertain).
* ``mnist``, ``fashion_mnist``, ``cifar10``: torchvision's datasets under ``root``
  (``download=True`` fetches them), official train/test split, normalised by the training set's
  mean and standard deviation (per channel).

Out-of-distribution sets (:func:`load_ood`), for the uncertainty metrics of a classifier:
``rotated`` (the test images turned by 90 degrees), ``heldout`` (test examples of the classes in
``holdout_classes``, removed from training and test), ``mnist`` / ``fashion_mnist`` (that
torchvision test set, normalised like the training data).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, SequentialSampler, TensorDataset

DATASETS = ("digits", "toy_regression", "mnist", "fashion_mnist", "cifar10")
OOD_SETS = ("none", "rotated", "heldout", "mnist", "fashion_mnist")


@dataclass
class DataSplits:
    """Train and test sets of one dataset, and what a model needs to know about them."""

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


#: The interval of the toy regression's inputs without training data.
TOY_GAP = (-0.35, 0.35)


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


def torchvision_images(name: str, root: str, download: bool = False, train: bool = True) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Images ``(N, C, H, W)`` in [0, 1], labels and the number of classes of a torchvision dataset."""
    import torchvision

    cls = getattr(torchvision.datasets, _TORCHVISION[name])
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

    data.heldout = split(data.test, keep=False)
    data.train, data.test = split(data.train, keep=True), split(data.test, keep=True)
    return data


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


def load_data(name: str, root: str = "data", download: bool = False, split_seed: int = 0,
              holdout_classes: Sequence[int] = (), subset: int = 0) -> DataSplits:
    """Load dataset ``name`` (one of :data:`DATASETS`), without ``holdout_classes`` (see :func:`hold_out`),
    keeping only the first ``subset`` training examples when ``subset > 0`` (the split is already shuffled)."""
    if name == "digits":
        data = load_digits_splits(split_seed)
    elif name == "toy_regression":
        data = load_toy_regression(split_seed=split_seed)
    elif name in _TORCHVISION:
        data = load_torchvision(name, root, download)
    else:
        raise ValueError(f"data={name!r} is not known; choose one of {list(DATASETS)}")
    if len(holdout_classes):
        data = hold_out(data, holdout_classes)
    if subset:
        data.train = TensorDataset(*(t[: int(subset)] for t in data.train.tensors))
    return data


def make_loader(dataset: TensorDataset, batch_size: int, shuffle: bool = False, seed: int = 0, rank: int = 0,
                world_size: int = 1) -> DataLoader:
    """A DataLoader yielding whole ``(x, y)`` batches by one tensor index each (no per-item collation).

    Shuffling uses its own generator seeded with ``seed``: the batch order depends on nothing else.
    With ``world_size`` K > 1 (data-parallel training, :mod:`pyro_bnn.distributed`) it yields the part ``rank``
    of each of those batches, cut into K contiguous near-equal parts: over the ranks, the same minibatches.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size}: use a batch size >= 1")
    if shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    batches = BatchSampler(sampler, int(batch_size), drop_last=False)
    if int(world_size) > 1:
        batches = ShardedBatches(batches, len(dataset), int(rank), int(world_size))
    return DataLoader(dataset, sampler=batches, batch_size=None)


def shard_rows(loader) -> Optional[Tuple[int, int]]:
    """``(first row, size)`` in the whole batch of the part ``loader`` (a :func:`make_loader` with ``rank``) yielded
    last; None for another loader."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, ShardedBatches) and getattr(loader, "num_workers", 0) == 0:
        return sampler.rows
    return None


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
            raise ValueError(f"rank={rank}: use 0 .. world_size - 1 = {world_size - 1}")
        self.batches, self.rank, self.world_size = batches, rank, world_size
        #: the shuffling generator, where a checkpoint finds it (:class:`~pyro_bnn.training_state.TrainingState`)
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
