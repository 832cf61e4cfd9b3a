"""scikit-learn's 1,797 real 8x8 handwritten digits (ship offline; the default data set), scaled by 1/16 to [0, 1],
stratified 80/20 split with ``random_state=split_seed``."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from .splits import DataSplits


def load_digits_splits(split_seed: int = 0, test_size: float = 0.2) -> DataSplits:
    """scikit-learn digits, ``train_test_split(X/16, y, test_size, random_state=split_seed, stratify=y)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x / 16.0, y, test_size=test_size, random_state=split_seed, stratify=y)

    def tensors(x, y):
        return TensorDataset(torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8), torch.tensor(y, dtype=torch.long))

    return DataSplits("digits", tensors(x_tr, y_tr), tensors(x_te, y_te), (1, 8, 8), 10, "classification")
