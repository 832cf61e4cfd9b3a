"""What the benchmark scripts share: the networks they time, the digits recipes, the UCI data sets, the app's config.

Benchmarks import this module and pyro_bnn's public API only (``pyro_bnn``, and ``pyro_bnn.app``'s ``train`` and
``CONF_DIR`` for the ones that run the Hydra experiment).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch
from hydra import compose, initialize_config_dir
from torch import nn

from pyro_bnn import BayesianCNN, BayesianMLP, NormalPrior
from pyro_bnn.app.schema import CONF_DIR
from pyro_bnn.data.uci import check_split

#: The UCI regression data sets of ``../shared/uci`` (the benchmark's standard layout).
UCI_DATASETS = ["bostonHousing", "energy", "naval-propulsion-plant", "power-plant", "protein-tertiary-structure",
                "wine-quality-red", "yacht"]


def missing_uci_file(root: Path, datasets: List[str], needs: Dict[str, List[str]]) -> str:
    """One line naming the first file of ``needs`` (method: the files of ``<name>/data/`` it reads) that a data set
    under ``root`` lacks, or '' if none: what a benchmark checks before any training."""
    for name in datasets:
        folder = root / name / "data"
        if not folder.is_dir():
            return f"--datasets {name}: no folder {folder} (a data set in the UCI layout under --root)"
        for method, files in needs.items():
            for file in files:
                if not (folder / file).is_file():
                    others = " ".join(m for m in needs if m != method)
                    return (f"--datasets {name}: {folder / file} is missing, which {method} reads; add it"
                            + (f", or leave {method} out (--methods {others})" if others else ""))
    return ""


def bad_uci_split(root: Path, datasets: List[str], splits: List[int]) -> str:
    """One line naming the first of ``splits`` that a data set under ``root`` does not have (its ``n_splits.txt``),
    or '' if none: checked before any training, by the app's own check of ``data.split``."""
    for name in datasets:
        for split in splits:
            try:
                check_split(name, split, str(root))
            except ValueError as error:
                return f"--splits {split}: {error}"
    return ""


#: The digits recipes of ``digits_accuracy.py`` and ``time_to_accuracy.py``: N(0, 1) prior, guide means from a PyTorch
#: init, init_scale 1e-3, closed-form KL. CNN: Adam lr 1e-2 with a cosine decay to 0 over 60 epochs, KL weight 0.1 (a
#: tempered posterior); MLP: lr 1e-3, the exact ELBO.
RECIPES = {
    "cnn": dict(epochs=60, batch_size=32, lr_schedule="cosine", lr=1e-2, kl_weight=0.1,
                build=lambda d: BayesianCNN(d.in_shape, 10, channels=(16, 32), hidden=(64,),
                                            prior=NormalPrior(1.0), num_data=d.num_train)),
    "mlp": dict(epochs=100, batch_size=64, lr_schedule="constant", lr=1e-3, kl_weight=1.0,
                build=lambda d: BayesianMLP(d.in_shape, 10, hidden=(400,), prior=NormalPrior(1.0), num_data=d.num_train)),
}


def mlp() -> nn.Module:
    """The MNIST-sized MLP the step-time benchmarks time (784-400-400-10)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 10))


def plain_uci_training(inputs: int, loader, epochs: int) -> Callable[[], None]:
    """``epochs`` of the UCI preset's network as a plain PyTorch MLP over ``loader`` (``inputs``-50-2 ReLU, its mean
    and ``1e-3 + softplus`` sd outputs, the Gaussian NLL, torch's Adam): the floor a Bayesian step is timed against."""
    net = nn.Sequential(nn.Linear(inputs, 50), nn.ReLU(), nn.Linear(50, 2))
    adam = torch.optim.Adam(net.parameters(), lr=1e-2)

    def train():
        for _ in range(epochs):
            for x, y in loader:
                adam.zero_grad(set_to_none=True)
                out = net(x)
                scale = 1e-3 + nn.functional.softplus(out[:, 1])
                (-torch.distributions.Normal(out[:, 0], scale).log_prob(y).mean()).backward()
                adam.step()

    return train


def interleaved_ms_per_step(systems: Dict[str, Callable[[], None]], repeats: int, steps: int) -> Dict[str, float]:
    """The median milliseconds per step of each system (a call trains ``steps`` steps), the systems run once to warm
    up, then interleaved ``repeats`` times (so that a slow spell of the machine hits them all)."""
    times = {name: [] for name in systems}
    for run in systems.values():
        run()
    for _ in range(repeats):
        for name, run in systems.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def cnn() -> nn.Module:
    """The MNIST-sized CNN the step-time benchmarks time (two 5x5 conv blocks, 256 dense units)."""
    return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 10))


def train_config(*overrides: str):
    """The Hydra app's composed ``train`` config with ``overrides`` (as ``python -m pyro_bnn.train`` composes it)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))
