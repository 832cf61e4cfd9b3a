"""PNG figures of a run (matplotlib, no display needed)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_elbo_terms(history: List[Dict[str, float]], path, title: str = "") -> None:
    """-ELBO, NLL and KL over epochs (left), and the KL of each layer (right); whole-data units."""
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for key, style in (("loss", "k-"), ("nll", "C0-"), ("kl", "C3-")):
        left.plot(epochs, [r[key] for r in history], style, label={"loss": "-ELBO = NLL + KL"}.get(key, key.upper()))
    left.set(xlabel="epoch", ylabel="nats (whole data set)", yscale="log", title="loss terms")
    left.legend()
    layers = [k for k in history[0] if k.startswith("kl.")]
    for i, key in enumerate(layers):
        right.plot(epochs, [r[key] for r in history], color=f"C{i % 10}", label=key[3:])
    right.set(xlabel="epoch", ylabel="KL (nats)", yscale="log", title="KL per layer")
    if layers:
        right.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
