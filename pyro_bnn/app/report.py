"""The figures and comparisons a training run writes next to its metrics.

* ``reliability.png`` (classification): reliability diagram of the test predictive;
* ``uncertainty_ood.png`` (classification with ``data.ood``): entropy and mutual information in vs out of distribution;
* ``predictive.png`` (regression): for 1-D inputs, predictive mean +- 2 sd over inputs that include the gap; for
  tabular data, each test example's predictive mean +- 2 sd (total and its epistemic part) against its target, in
  the original units, and the z-scores of the targets;
* ``reference.json`` / ``reference.png`` (``reference=nuts``): SVI's predictive against NUTS's on the same model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import torch
from torch import nn

from ..data.datasets import TOY_GAP, DataSplits
from ..evaluation.predictive import (
    output_metrics,
    predict_with_samples,
    predictive_curve,
    reliability_bins,
    uncertainty,
)
from ..evaluation.reference import nuts_posterior
from .plots import (
    plot_entropy_comparison,
    plot_regression_bands,
    plot_reliability,
    plot_test_predictions,
    plot_uncertainty_in_out,
)
from .run_dir import write_json

#: Inputs of the regression curve: the toy data's range [-1, 1] and a margin on each side.
CURVE_RANGE = (-1.5, 1.5)


def regression_curve(model: nn.Module, samples: Dict[str, torch.Tensor], num_points: int = 301) -> Dict[str, torch.Tensor]:
    """:func:`~pyro_bnn.evaluation.predictive.predictive_curve` on an even grid over :data:`CURVE_RANGE`."""
    x = torch.linspace(*CURVE_RANGE, num_points).reshape(-1, 1)
    return predictive_curve(model, samples, x)


def gap_summary(curve: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Mean predictive sd inside the toy data's gap and over the inputs with training data."""
    x = curve["x"]
    in_gap = (x > TOY_GAP[0]) & (x < TOY_GAP[1])
    on_data = (x.abs() >= TOY_GAP[1]) & (x.abs() <= 1.0)
    return {"predictive_std_gap": float(curve["std"][in_gap].mean()),
            "predictive_std_data": float(curve["std"][on_data].mean())}


def uncertainty_summary(scored, data: DataSplits) -> Dict[str, float]:
    """The run's ``uncertainty`` metrics from its test predictive ``scored``: for the toy regression, the predictive sd
    in its gap and on its data; {} elsewhere."""
    return gap_summary(scored.curve) if data.name == "toy_regression" else {}


def write_figures(output_dir: Path, model: nn.Module, scored, data: DataSplits, ood_name: str, title: str) -> List[Path]:
    """Write the run's uncertainty figures from its test predictive ``scored`` (:class:`~pyro_bnn.app.train.Scored`);
    returns the files written."""
    output_dir, raw, metrics = Path(output_dir), scored.raw, scored.metrics
    if model.likelihood.task == "classification":
        probs = raw["outputs"].softmax(-1)
        plot_reliability(reliability_bins(probs.mean(0), raw["targets"]), metrics["ece"],
                         output_dir / "reliability.png", title=f"{title}:")
        if "ood_outputs" not in raw:
            return [output_dir / "reliability.png"]
        plot_uncertainty_in_out(uncertainty(probs), uncertainty(raw["ood_outputs"].softmax(-1)),
                                {k[4:]: v for k, v in metrics.items() if k.startswith("ood_auroc")},
                                output_dir / "uncertainty_ood.png",
                                names=(f"{data.name} test", f"OOD: {ood_name}"), title=title)
        return [output_dir / "reliability.png", output_dir / "uncertainty_ood.png"]
    if data.in_shape != (1,):
        locs, sigma = model.likelihood.loc_scale(raw["outputs"])
        locs = locs.double() * data.target_std + data.target_mean
        sigma = torch.as_tensor(sigma).detach().double().expand_as(locs) * data.target_std
        targets = raw["targets"].double() * data.target_std + data.target_mean
        plot_test_predictions(locs.mean(0), sigma.pow(2).mean(0).sqrt(), locs.std(0, unbiased=False), targets,
                              output_dir / "predictive.png", title=title)
        return [output_dir / "predictive.png"]
    x, y = data.train.tensors
    plot_regression_bands({"SVI": scored.curve}, x[:, 0], y, output_dir / "predictive.png", gap=TOY_GAP, title=title)
    return [output_dir / "predictive.png"]


def write_nuts_comparison(output_dir: Path, model: nn.Module, guide: nn.Module, scored, data: DataSplits,
                          options: Dict) -> Dict:
    """Run NUTS on the same model and training data, compare its predictive with SVI's (``scored``, the test
    predictive of :class:`~pyro_bnn.app.train.Scored`), write ``reference.json`` and ``reference.png``; returns the
    comparison."""
    svi_samples, svi_outputs, svi_metrics, test_loader = scored.samples, scored.raw["outputs"], scored.metrics, scored.loader
    x, y = (t.to(next(iter(svi_samples.values())).device) for t in data.train.tensors)
    init = {k: v.detach() for k, v in guide.median(x, y).items()}
    nuts_samples, diagnostics = nuts_posterior(model, x, y, init_values=init, **options)
    outputs, targets = predict_with_samples(model, nuts_samples, test_loader)
    nuts_metrics = output_metrics(model, outputs, targets)
    keep = lambda m: {k: v for k, v in m.items() if not k.startswith("ood_")}  # noqa: E731
    comparison = {"svi": keep(svi_metrics), "nuts": nuts_metrics, "nuts_diagnostics": diagnostics,
                  "nuts_options": dict(options)}
    output_dir = Path(output_dir)
    if model.likelihood.task == "classification":
        entropies = {"SVI": uncertainty(svi_outputs.softmax(-1))["entropy"],
                     "NUTS": uncertainty(outputs.softmax(-1))["entropy"]}
        comparison["entropy_correlation"] = float(torch.corrcoef(torch.stack(list(entropies.values())))[0, 1])
        plot_entropy_comparison(entropies, output_dir / "reference.png",
                                title=f"{data.name} test: predictive entropy, SVI vs NUTS")
    elif data.in_shape == (1,):
        curves = {"SVI": scored.curve, "NUTS": regression_curve(model, nuts_samples)}
        xt, yt = data.train.tensors
        plot_regression_bands(curves, xt[:, 0], yt, output_dir / "reference.png", gap=TOY_GAP,
                              title=f"{data.name}: SVI vs NUTS predictive")
        comparison["predictive_std_over_inputs"] = {
            "x": curves["SVI"]["x"][::10].tolist(),
            "svi": curves["SVI"]["std"][::10].tolist(),
            "nuts": curves["NUTS"]["std"][::10].tolist(),
        }
        if data.name == "toy_regression":
            comparison["svi"].update(gap_summary(curves["SVI"]))
            comparison["nuts"].update(gap_summary(curves["NUTS"]))
    write_json(output_dir / "reference.json", comparison)
    return comparison
