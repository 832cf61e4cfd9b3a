"""Every data set by name (:data:`DATASETS`, ``data=<name>``) and :func:`load_data`, which loads one and makes the
cuts its arguments ask for (:mod:`pyro_bnn.data.splits`). One module per family: :mod:`~pyro_bnn.data.digits`,
:mod:`~pyro_bnn.data.toy_regression`, :mod:`~pyro_bnn.data.uci`, :mod:`~pyro_bnn.data.torchvision_sets`; the
out-of-distribution sets: :mod:`~pyro_bnn.data.ood`."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Dict, NamedTuple, Optional, Sequence

import torch

from ..checks import ArgumentError
from .digits import load_digits_splits
from .splits import DataSplits, first_examples, hold_out, validation_part
from .torchvision_sets import TORCHVISION_CLASSES, load_torchvision
from .toy_regression import gap_summary, load_toy_regression
from .uci import load_uci


class Dataset(NamedTuple):
    """A data set :func:`load_data` knows: how to load it and what it is."""

    #: ``(root, download, split_seed, name, split, validation) -> DataSplits`` (keywords; each takes what it needs)
    load: Callable[..., DataSplits]
    #: ``"classification"`` or ``"regression"``
    task: str
    #: whether ``load`` cuts the validation part itself (else :func:`load_data` takes the training split's last part)
    validates: bool = False
    #: ``curve -> {name: value}``: what the run reports of its predictive over a 1-D input grid (``metrics.json``'s
    #: ``uncertainty``; the toy regression: the sd in its gap); None: nothing
    uncertainty_summary: Optional[Callable[[Dict[str, torch.Tensor]], Dict[str, float]]] = None


def _uci(name=None, split=0, root="data", download=False, validation=0.0, **_) -> DataSplits:
    if not name:
        raise ValueError("dataset 'uci' needs the data set's name (data.name=yacht, load_data('uci', name='yacht'))")
    return load_uci(name, split, root, download, validation)


def _torchvision(dataset: str) -> Callable[..., DataSplits]:
    return lambda root="data", download=False, **_: load_torchvision(dataset, root, download)


#: Every data set by name (``data=<name>``, :func:`load_data`): the one list of them.
DATASETS: Dict[str, Dataset] = {
    "digits": Dataset(lambda split_seed=0, **_: load_digits_splits(split_seed), "classification"),
    "toy_regression": Dataset(lambda split_seed=0, **_: load_toy_regression(split_seed=split_seed), "regression",
                              uncertainty_summary=gap_summary),
    "uci": Dataset(_uci, "regression", validates=True),
    **{name: Dataset(_torchvision(name), "classification") for name in TORCHVISION_CLASSES},
}


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
        raise ArgumentError("data", dataset, joiner=" is ", fix=f"not known; choose one of {list(DATASETS)}")
    data = DATASETS[dataset].load(root=root, download=download, split_seed=split_seed, name=name, split=split,
                                  validation=validation)
    data = replace(data, loader=dataset)
    if validation and not DATASETS[dataset].validates:
        data = validation_part(data, validation)
    if len(holdout_classes):
        data = hold_out(data, holdout_classes)
    return first_examples(data, subset) if subset else data

__all__ = ["load_data"]
