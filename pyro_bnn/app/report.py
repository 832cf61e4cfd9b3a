"""The figures and comparisons a training run writes next to its metrics.

* ``reliability.png`` (classification): reliability diagram of the test predictive;
* ``uncertainty_ood.png`` (classification with ``data.ood``): entropy and mutual information in vs out of distribution;
* ``predictive.png`` (regression): for 1-D inputs, predictive mean +- 2 sd over inputs that include the gap; for
  tabular data, each test example's predictive mean +- 2 sd (total and its epistemic part) against its target, in
  the original units, and the z-scores of the targets;
* ``reference.json`` / ``reference.png`` (``reference=nuts``): SVI's predictive against NUTS's on the same model.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Dict, List

import torch
from torch import nn

from ..data.registry import DATASETS
from ..data.splits import DataSplits
from ..data.toy_regression import TOY_GAP
from ..evaluation.predictive import output_metrics, predict_with_samples, predictive_curve
from ..evaluation.reference import nuts_posterior
from ..metrics import reliability_bins, uncertainty
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


def uncertainty_summary(scored, data: DataSplits) -> Dict[str, float]:
    """The run's ``uncertainty`` metrics from its test predictive ``scored``: what the data set reports of the
    predictive over its inputs (:attr:`~pyro_bnn.data.registry.Dataset.uncertainty_summary`; the toy regression: the sd
    in its gap and on its data); {} elsewhere."""
    summary = DATASETS[data.loader].uncertainty_summary if data.loader in DATASETS else None
    return summary(scored.curve) if summary is not None and scored.curve is not None else {}


def write_figures(output_dir: Path, model: nn.Module, scored, data: DataSplits, ood_name: str, title: str) -> List[Path]:
    """Write the run's uncertainty figures from its test predictive ``scored`` (:class:`~pyro_bnn.app.run_record.Scored`),
    those of its likelihood's task (:data:`FIGURES`); returns the files written."""
    return FIGURES[model.likelihood.task](Path(output_dir), model, scored, data, ood_name, title)


def _classifier_figures(output_dir: Path, model: nn.Module, scored, data: DataSplits, ood_name: str,
                        title: str) -> List[Path]:
    """``reliability.png``, and with an OOD set ``uncertainty_ood.png``."""
    raw, metrics = scored.raw, scored.metrics
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


def _regression_figures(output_dir: Path, model: nn.Module, scored, data: DataSplits, ood_name: str,
                        title: str) -> List[Path]:
    """``predictive.png``: the predictive curve over 1-D inputs, else each test example's predictive."""
    if scored.curve is not None:
        x, y = data.train.tensors
        plot_regression_bands({"SVI": scored.curve}, x[:, 0], y, output_dir / "predictive.png", gap=TOY_GAP,
                              title=title)
        return [output_dir / "predictive.png"]
    summary = model.likelihood.summary(scored.raw["outputs"])
    targets = scored.raw["targets"].double() * data.target_std + data.target_mean
    plot_test_predictions(summary["mean"] * data.target_std + data.target_mean,
                          summary["aleatoric_std"] * data.target_std, summary["epistemic_std"] * data.target_std,
                          targets, output_dir / "predictive.png", title=title)
    return [output_dir / "predictive.png"]


#: The figures of a run by its likelihood's task (:attr:`~pyro_bnn.model.likelihoods.Likelihood.task`).
FIGURES = {"classification": _classifier_figures, "regression": _regression_figures}


def write_nuts_comparison(output_dir: Path, model: nn.Module, guide: nn.Module, scored, data: DataSplits,
                          options: Dict) -> Dict:
    """Run NUTS on the same model and training data, compare its predictive with SVI's (``scored``, the test
    predictive of :class:`~pyro_bnn.app.run_record.Scored`; the comparison of the likelihood's task, :data:`COMPARISONS`),
    write ``reference.json`` and ``reference.png``; returns the comparison."""
    svi_samples, svi_metrics, test_loader = scored.samples, scored.metrics, scored.loader
    x, y = (t.to(next(iter(svi_samples.values())).device) for t in data.train.tensors)
    init = {k: v.detach() for k, v in guide.median(x, y).items()}
    nuts_samples, diagnostics = nuts_posterior(model, x, y, init_values=init, **options)
    outputs, targets = predict_with_samples(model, nuts_samples, test_loader)
    nuts_metrics = output_metrics(model, outputs, targets)
    keep = lambda m: {k: v for k, v in m.items() if not k.startswith("ood_")}  # noqa: E731
    comparison = {"svi": keep(svi_metrics), "nuts": nuts_metrics, "nuts_diagnostics": diagnostics,
                  "nuts_options": dict(options)}
    output_dir = Path(output_dir)
    COMPARISONS[model.likelihood.task](output_dir / "reference.png", model, scored, data, nuts_samples, outputs,
                                       comparison)
    write_json(output_dir / "reference.json", comparison)
    return comparison


def _entropy_comparison(path: Path, model: nn.Module, scored, data: DataSplits, nuts_samples, nuts_outputs,
                        comparison: Dict) -> None:
    """A classifier: the correlation of SVI's and NUTS's predictive entropies over the test set, and their plot."""
    entropies = {"SVI": model.likelihood.summary(scored.raw["outputs"])["entropy"],
                 "NUTS": model.likelihood.summary(nuts_outputs)["entropy"]}
    comparison["entropy_correlation"] = float(torch.corrcoef(torch.stack(list(entropies.values())))[0, 1])
    plot_entropy_comparison(entropies, path, title=f"{data.name} test: predictive entropy, SVI vs NUTS")


def _curve_comparison(path: Path, model: nn.Module, scored, data: DataSplits, nuts_samples, nuts_outputs,
                      comparison: Dict) -> None:
    """Regression on 1-D inputs: both predictive curves (their sd every 10th input, and the data set's own summary
    of them); nothing more for other inputs."""
    if scored.curve is None:
        return
    curves = {"SVI": scored.curve, "NUTS": regression_curve(model, nuts_samples)}
    xt, yt = data.train.tensors
    plot_regression_bands(curves, xt[:, 0], yt, path, gap=TOY_GAP, title=f"{data.name}: SVI vs NUTS predictive")
    comparison["predictive_std_over_inputs"] = {
        "x": curves["SVI"]["x"][::10].tolist(),
        "svi": curves["SVI"]["std"][::10].tolist(),
        "nuts": curves["NUTS"]["std"][::10].tolist(),
    }
    comparison["svi"].update(uncertainty_summary(scored, data))
    comparison["nuts"].update(uncertainty_summary(replace(scored, curve=curves["NUTS"]), data))


#: The NUTS comparison by the likelihood's task.
COMPARISONS = {"classification": _entropy_comparison, "regression": _curve_comparison}
