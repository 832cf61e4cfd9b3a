"""PNG figures of a run (matplotlib, no display needed); each is written atomically."""

from __future__ import annotations

import math
import textwrap
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..io.files import replacing


def _subplots(*args, **kwargs):
    """pyplot's ``subplots`` on the Agg backend (no display needed); matplotlib is imported at a run's first figure,
    not when a command starts (``--help`` and a refused config answer without it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def _save(fig, path) -> None:
    import matplotlib.pyplot as plt

    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def _set_yscale(ax, values) -> None:
    """``log`` for positive values spanning decades; ``symlog`` where some are <= 0 (linear within 1% of the
    largest magnitude, so a term that swings around 0 stays readable); else ``linear``."""
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) <= 0:
        ax.set_yscale("symlog", linthresh=max(1.0, 0.01 * max(abs(v) for v in finite)))
    elif finite and max(finite) / min(finite) > 100:
        ax.set_yscale("log")


def plot_elbo_terms(history: List[Dict[str, float]], path, title: str = "") -> None:
    """-ELBO, NLL and KL over epochs (left), and the KL of each layer (right); whole-data units."""
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = _subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for key, style, width in (("nll", "C0-", 1.5), ("kl", "C3-", 1.5), ("loss", "k--", 2.0)):  # -ELBO on top
        left.plot(epochs, [r[key] for r in history], style, lw=width,
                  label={"loss": "-ELBO = NLL + KL + hyperprior" if "hyperprior" in history[0]
                         else "-ELBO = NLL + KL"}.get(key, key.upper()))
    # a regression's NLL can be negative: a log axis would turn it into spikes
    _set_yscale(left, [r[k] for r in history for k in ("loss", "nll", "kl")])
    left.set(xlabel="epoch", ylabel="nats (whole data set)", title="loss terms")
    left.legend()
    layers = [k for k in history[0] if k.startswith("kl.")]
    for i, key in enumerate(layers):
        right.plot(epochs, [r[key] for r in history], color=f"C{i % 10}", label=key[3:])
    _set_yscale(right, [r[k] for r in history for k in layers])
    right.set(xlabel="epoch", ylabel="KL (nats)", title="KL per layer")
    if layers:
        right.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_reliability(bins: Dict[str, torch.Tensor], ece: float, path, title: str = "") -> None:
    """Reliability diagram: accuracy against confidence per bin (top), examples per bin (bottom).

    :param bins: the output of :func:`pyro_bnn.evaluation.predictive.reliability_bins`.
    """
    edges = bins["edges"].numpy()
    width = edges[1] - edges[0]
    fig, (top, bottom) = _subplots(2, 1, figsize=(5, 6), sharex=True, height_ratios=[3, 1], constrained_layout=True)
    filled = bins["count"] > 0
    top.bar(edges[:-1][filled], bins["accuracy"][filled].numpy(), width=width, align="edge", color="C0",
            edgecolor="k", label="accuracy")
    gap_bottom = torch.minimum(bins["accuracy"], bins["confidence"])[filled].numpy()
    gap = (bins["accuracy"] - bins["confidence"]).abs()[filled].numpy()
    top.bar(edges[:-1][filled], gap, bottom=gap_bottom, width=width, align="edge", color="C3", alpha=0.3,
            edgecolor="C3", hatch="//", label="|accuracy - confidence|")
    top.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    wrapped = "\n".join(textwrap.fill(line, 55) for line in title.splitlines())  # the figure is narrow
    top.set_title(f"{wrapped}\nECE {ece:.4f}".strip(), fontsize="medium")
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(edges[:-1], bins["count"].numpy(), width=width, align="edge", color="C7", edgecolor="k")
    bottom.set(xlabel="confidence (max predictive probability)", ylabel="examples")
    _save(fig, path)


def plot_uncertainty_in_out(u_in: Dict[str, torch.Tensor], u_out: Dict[str, torch.Tensor], aurocs: Dict[str, float],
                            path, names=("in distribution", "out of distribution"), title: str = "") -> None:
    """Histograms of predictive entropy and mutual information on in- and out-of-distribution inputs."""
    fig, axes = _subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, key, label in zip(axes, ("entropy", "mutual_information"), ("predictive entropy", "mutual information")):
        values = torch.cat([u_in[key], u_out[key]])
        bins = torch.linspace(0, float(values.max()) + 1e-9, 41).numpy()
        ax.hist(u_in[key].numpy(), bins=bins, alpha=0.6, density=True, label=f"{names[0]} ({len(u_in[key])})")
        ax.hist(u_out[key].numpy(), bins=bins, alpha=0.6, density=True, label=f"{names[1]} ({len(u_out[key])})")
        ax.set(xlabel=f"{label} (nats)", ylabel="density (log scale)", yscale="log",
               title=f"{label}: AUROC {aurocs[f'auroc_{key}']:.3f} (0.5 = chance)")
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_regression_bands(curves: Dict[str, Dict[str, torch.Tensor]], x_train: torch.Tensor, y_train: torch.Tensor,
                          path, gap: Optional[tuple] = None, title: str = "") -> None:
    """Predictive mean with +-2 standard deviation bands over the inputs, one band per posterior.

    :param curves: ``{label: {"x", "mean", "std"}}`` (e.g. ``{"SVI": ..., "NUTS": ...}``).
    :param gap: an input interval without training data, shaded.
    """
    fig, ax = _subplots(figsize=(10, 4.5), constrained_layout=True)
    if gap is not None:
        ax.axvspan(*gap, color="0.92", label="no training data")
    for i, (label, c) in enumerate(curves.items()):
        x, mean, std = c["x"].numpy(), c["mean"].numpy(), c["std"].numpy()
        ax.fill_between(x, mean - 2 * std, mean + 2 * std, color=f"C{i}", alpha=0.25, label=f"{label} mean +- 2 sd")
        ax.plot(x, mean, color=f"C{i}", lw=2, label=f"{label} mean")
    ax.plot(x_train.numpy(), y_train.numpy(), "k.", ms=3, label="training data")
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)


def plot_test_predictions(mean: torch.Tensor, aleatoric: torch.Tensor, epistemic: torch.Tensor, targets: torch.Tensor,
                          path, title: str = "") -> None:
    """Tabular regression: each test example's predictive mean +- 2 sd against its target (left; the sd's noise and
    weight parts as two bars), and the targets' z-scores under the predictive against N(0, 1) (right)."""
    total = (aleatoric ** 2 + epistemic ** 2).sqrt()
    fig, (left, right) = _subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    left.errorbar(targets, mean, yerr=2 * total, fmt="none", ecolor="C0", alpha=0.35, label="+- 2 sd (total)")
    left.errorbar(targets, mean, yerr=2 * epistemic, fmt="o", ms=2, color="C3", ecolor="C3", alpha=0.6,
                  label="+- 2 sd (weights: epistemic)")
    low, high = float(targets.min()), float(targets.max())
    left.plot([low, high], [low, high], "k--", lw=1)
    left.set(xlabel="target", ylabel="predictive mean", title="test predictions")
    left.legend(fontsize="small")
    z = ((targets - mean) / total).clamp(-6, 6)
    right.hist(z.numpy(), bins=30, density=True, alpha=0.6, color="C0")
    grid = torch.linspace(-4, 4, 200)
    right.plot(grid, torch.exp(-grid ** 2 / 2) / math.sqrt(2 * math.pi), "k-", label="N(0, 1)")
    right.set(xlabel="(target - mean) / predictive sd", title="z-scores (calibrated: N(0, 1))")
    right.legend(fontsize="small")
    fig.suptitle(title)
    _save(fig, path)


def plot_entropy_comparison(entropies: Dict[str, torch.Tensor], path, title: str = "") -> None:
    """Per-example predictive entropy of two posteriors on the same inputs, against each other."""
    (name_a, a), (name_b, b) = entropies.items()
    fig, ax = _subplots(figsize=(5, 5), constrained_layout=True)
    top = float(torch.cat([a, b]).max()) * 1.05 + 1e-9
    ax.plot(a.numpy(), b.numpy(), ".", alpha=0.6)
    ax.plot([0, top], [0, top], "k--", lw=1)
    ax.set(xlabel=f"{name_a} predictive entropy", ylabel=f"{name_b} predictive entropy", xlim=(0, top), ylim=(0, top),
           title=title)
    _save(fig, path)


def plot_posterior_health(health: Dict[str, Dict[str, Optional[float]]], path, title: str = "") -> None:
    """Per site: mean posterior sd over the initial scale, median |mu|/sigma, share of weights at the prior.

    :param health: the output of :func:`pyro_bnn.evaluation.health.posterior_health`.
    """
    names = list(health)
    positions = range(len(names))
    fig, axes = _subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    panels = [("sd_ratio", "mean sd / init_scale", "log", "has it moved? (1 = still at init)"),
              ("snr", "median |mu| / sigma", "log", "signal to noise"),
              ("at_prior", "share of weights", "linear", "fallen back to the prior")]
    for ax, (key, ylabel, scale, panel_title) in zip(axes, panels):
        values = [health[n][key] if health[n][key] is not None else float("nan") for n in names]
        ax.bar(positions, values, color="C0", edgecolor="k")
        ax.set(ylabel=ylabel, yscale=scale, title=panel_title)
        ax.set_xticks(list(positions), names, rotation=45, ha="right", fontsize="small")
        if key == "sd_ratio":
            ax.axhline(1.0, color="k", ls="--", lw=1)
        if key == "at_prior":
            ax.set_ylim(0, 1)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def _as_number(value) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def plot_sweep(rows: List[Dict[str, Any]], key: str, path, group_keys: Sequence[str] = ()) -> None:
    """A sweep's finished jobs against the swept ``key``: test accuracy, NLL, ECE (or RMSE and log-likelihood)
    and the final KL; one line per value of the other swept keys (``group_keys``), with a legend.

    :param rows: the rows of :func:`pyro_bnn.app.summarize.summarize` (``status``, metrics, overrides).
    """
    done = [r for r in rows if r["status"] == "ok" and key in r]  # a job without the key (e.g. resumed) is not placed
    regression = any("rmse" in r for r in done)
    panels = (["rmse", "log_likelihood"] if regression else ["accuracy", "nll", "ece"]) + ["train_kl"]
    numeric = all(_as_number(r.get(key)) is not None for r in done)
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for r in done:
        groups.setdefault(", ".join(f"{k}={r.get(k, '')}" for k in group_keys), []).append(r)
    fig, axes = _subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), constrained_layout=True)
    for ax, metric in zip(axes, panels):
        for label, members in groups.items():
            pairs = sorted(((_as_number(r[key]) if numeric else str(r[key])), r.get(metric, math.nan))
                           for r in members)
            ax.plot([p[0] for p in pairs], [p[1] for p in pairs], "o-", label=label or None)
        xs = [_as_number(r[key]) for r in done] if numeric else []
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set(xlabel=key, title={"train_kl": "final KL (nats)"}.get(metric, f"test {metric}"))
        if metric == "train_kl":
            _set_yscale(ax, [r.get(metric, math.nan) for r in done])
    if group_keys:
        axes[-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(f"{len(done)} of {len(rows)} jobs done")
    _save(fig, path)
