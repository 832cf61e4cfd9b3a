"""1-D regression, ``y = sin(3x) + 0.1 eps``, inputs on ``[-1, -0.35] U [0.35, 1]``: a gap in the middle, where a
good posterior is uncertain (:func:`gap_summary` says how much)."""

from __future__ import annotations

from typing import Dict

import torch
from torch.utils.data import TensorDataset

from .splits import DataSplits

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


def gap_summary(curve: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Mean predictive sd inside the gap (``predictive_std_gap``) and over the inputs with training data
    (``predictive_std_data``), from a predictive ``curve`` ``{"x", "std"}`` over inputs that cover both."""
    x = curve["x"]
    in_gap = (x > TOY_GAP[0]) & (x < TOY_GAP[1])
    on_data = (x.abs() >= TOY_GAP[1]) & (x.abs() <= 1.0)
    return {"predictive_std_gap": float(curve["std"][in_gap].mean()),
            "predictive_std_data": float(curve["std"][on_data].mean())}
