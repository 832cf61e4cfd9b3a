"""Posterior predictive and its metrics.

:func:`posterior_samples` draws ``S`` weight samples from the guide once;
:func:`predict_with_samples` runs every batch of a loader through the model under
each of them (:class:`pyro.infer.Predictive`), so every example, in or out of
distribution, is scored by the same ``S`` networks. The samples may come from
elsewhere too (NUTS, see :mod:`pyro_bnn.evaluation.reference`).

Calibration error comes from torchmetrics, AUROC from scikit-learn.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Tuple

import pyro
import torch
from pyro import poutine
from pyro.infer import Predictive
from pyro.poutine.util import site_is_subsample
from sklearn.metrics import roc_auc_score
from torch import nn
from torchmetrics.functional.classification import multiclass_calibration_error

from ..checks import check_batch, check_count
from ..model.networks import device_of

ECE_BINS = 15
#: Predictive draws beyond which scoring only exhausts memory (each holds the network's outputs on the whole set).
MAX_SAMPLES = 10_000
#: Probability mass of the central predictive interval whose coverage regression reports.
COVERAGE_MASS = 0.9
#: The summary metrics of ``evaluate`` / ``metrics.json``'s ``test`` by kind (the ``ood`` ones with an OOD set): what a
#: sweep summarises and a sweeper may optimise. A new metric: its function here, and its name in this list.
SUMMARY_METRICS = {
    "classification": ("accuracy", "nll", "ece", "brier"),
    "ood": ("ood_auroc_entropy", "ood_auroc_mutual_information"),
    "regression": ("rmse", "log_likelihood", "coverage_90", "predictive_std", "aleatoric_std", "epistemic_std"),
}


def check_num_samples(num_samples: int) -> int:
    """``num_samples`` as an int, if it is a number of predictive draws that fits in memory."""
    return check_count(num_samples, "num_samples", maximum=MAX_SAMPLES)


def _batches(model: nn.Module, loader: Iterable, first_only: bool = False) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The batches of ``loader`` on the model's device (only the first with ``first_only``), checked finite."""
    device = device_of(model)
    batches = []
    for x, y in loader:
        if not bool(torch.isfinite(x).all()):
            raise ValueError("the evaluation inputs x hold NaN or inf values: clean or impute the data first")
        batches.append((x.to(device), y.to(device)))
        if first_only:
            break
    if not batches:
        raise ValueError("the evaluation data is empty")
    return batches


@torch.no_grad()
def posterior_samples(model: nn.Module, guide: nn.Module, loader: Iterable, num_samples: int = 100) -> Dict[str, torch.Tensor]:
    """``num_samples`` joint draws of every weight site from ``guide``: ``{site: (S, *shape)}``.

    :param loader: any data the model accepts (its first batch sets up the traces).
    """
    num_samples = check_num_samples(num_samples)
    (x, y), = _batches(model, loader, first_only=True)
    with pyro.validation_enabled(False):  # only the sites are read; a broken posterior is named by score()
        model_trace = poutine.trace(model).get_trace(x, y)
    latent = [name for name, site in model_trace.iter_stochastic_nodes() if not site_is_subsample(site)]
    traces = [poutine.trace(guide).get_trace(x, y) for _ in range(int(num_samples))]
    return {name: torch.stack([t.nodes[name]["value"] for t in traces]) for name in latent}


@torch.no_grad()
def predict_with_samples(model: nn.Module, samples: Dict[str, torch.Tensor], loader: Iterable) -> Tuple[torch.Tensor, torch.Tensor]:
    """Network outputs under each weight sample ``{site: (S, *shape)}``.

    :return: ``(outputs, targets)``: outputs of shape ``(S, N, ...)`` (logits or regression means),
        targets of shape ``(N,)``, both on the CPU.
    """
    batches = _batches(model, loader)
    device = device_of(model)
    run = Predictive(model, posterior_samples={k: v.to(device) for k, v in samples.items()}, return_sites=["_RETURN"])
    with pyro.validation_enabled(False):  # outputs only: non-finite ones are named by score()
        # y observed, so the likelihood draws nothing (a broken posterior's NaN probabilities could not be sampled)
        outputs = torch.cat([run(x, y)["_RETURN"].cpu() for x, y in batches], dim=1)
    return outputs, torch.cat([y.cpu() for _, y in batches])


def predict(model: nn.Module, guide: nn.Module, loader: Iterable, num_samples: int = 100) -> Tuple[torch.Tensor, torch.Tensor]:
    """Network outputs under ``num_samples`` posterior weight draws from ``guide`` (see :func:`predict_with_samples`)."""
    return predict_with_samples(model, posterior_samples(model, guide, loader, num_samples), loader)


def uncertainty(probs: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per-example uncertainty of class probabilities ``(S, N, C)`` from ``S`` posterior samples.

    :return: ``entropy`` of the predictive mean (total), ``expected_entropy`` (mean over samples:
        the aleatoric part), ``mutual_information`` (their difference: the epistemic part), each ``(N,)``.
    """
    probs = probs.double()
    if probs.dim() == 2:
        probs = probs.unsqueeze(0)
    entropy = _entropy(probs.mean(0))
    expected_entropy = _entropy(probs).mean(0)
    return {"entropy": entropy, "expected_entropy": expected_entropy,
            "mutual_information": (entropy - expected_entropy).clamp_min(0.0)}


def classification_metrics(probs: torch.Tensor, targets: torch.Tensor, num_bins: int = ECE_BINS) -> Dict[str, float]:
    """Metrics of the posterior predictive of a classifier.

    :param probs: class probabilities of each posterior sample, ``(S, N, C)`` (or ``(N, C)`` for one).
    :param targets: true classes, ``(N,)``.
    :return: ``accuracy``; ``nll`` (of the predictive mean); ``brier`` (sum over classes, mean over
        examples); ``ece`` (torchmetrics' L1 calibration error, ``num_bins`` equal-width confidence
        bins); ``entropy`` (of the predictive mean); ``expected_entropy`` (mean over samples);
        ``mutual_information`` (their difference); all means over examples.
    """
    probs = probs.double()
    if probs.dim() == 2:
        probs = probs.unsqueeze(0)
    mean = probs.mean(0)
    targets = targets.long()
    onehot = torch.nn.functional.one_hot(targets, mean.shape[-1]).double()
    spread = uncertainty(probs)
    return {
        "accuracy": float((mean.argmax(-1) == targets).double().mean()),
        "nll": float(-mean.gather(-1, targets[:, None]).clamp_min(1e-300).log().mean()),
        "brier": float(((mean - onehot) ** 2).sum(-1).mean()),
        "ece": float(multiclass_calibration_error(mean, targets, num_classes=mean.shape[-1], n_bins=num_bins)),
        **{key: float(value.mean()) for key, value in spread.items()},
    }


def reliability_bins(probs: torch.Tensor, targets: torch.Tensor, num_bins: int = ECE_BINS) -> Dict[str, torch.Tensor]:
    """What a reliability diagram draws: per equal-width confidence bin ``(k/M, (k+1)/M]``, the
    ``count`` of examples, their mean ``confidence`` and ``accuracy`` (NaN where a bin is empty),
    and the bin ``edges``. ``sum(count * |accuracy - confidence|) / N`` is the ECE.

    :param probs: predictive mean class probabilities ``(N, C)``.
    """
    confidence, predicted = probs.double().max(-1)
    correct = (predicted == targets).double()
    index = (confidence * num_bins).ceil().clamp(1, num_bins).long() - 1
    count = torch.bincount(index, minlength=num_bins).double()

    def bin_mean(values):
        return torch.bincount(index, weights=values, minlength=num_bins) / count

    return {"count": count, "confidence": bin_mean(confidence), "accuracy": bin_mean(correct),
            "edges": torch.linspace(0, 1, num_bins + 1, dtype=torch.float64)}


def ood_metrics(probs_in: torch.Tensor, probs_out: torch.Tensor) -> Dict[str, float]:
    """How well uncertainty tells out-of-distribution inputs from in-distribution ones.

    :param probs_in: class probabilities ``(S, N_in, C)`` on the in-distribution test set.
    :param probs_out: the same on the OOD set, ``(S, N_out, C)``.
    :return: ``auroc_entropy`` and ``auroc_mutual_information`` (scikit-learn's ``roc_auc_score``,
        OOD the positive class, the score the detector: 0.5 is chance, 1 is perfect), and the mean
        of each score in and out (``entropy_in``, ``entropy_out``, ...).
    """
    u_in, u_out = uncertainty(probs_in), uncertainty(probs_out)
    labels = [0] * len(u_in["entropy"]) + [1] * len(u_out["entropy"])
    metrics = {}
    for key in ("entropy", "mutual_information"):
        metrics[f"auroc_{key}"] = float(roc_auc_score(labels, torch.cat([u_in[key], u_out[key]]).numpy()))
    for key in ("entropy", "mutual_information"):
        metrics[f"{key}_in"], metrics[f"{key}_out"] = float(u_in[key].mean()), float(u_out[key].mean())
    return metrics


def regression_metrics(locs: torch.Tensor, noise_scale, targets: torch.Tensor) -> Dict[str, float]:
    """Metrics of a Gaussian-likelihood posterior predictive (a mixture of S Normals).

    :param locs: predicted means of each posterior sample, ``(S, N)``.
    :param noise_scale: the likelihood's noise standard deviation: a scalar, or ``(S, N)`` (heteroscedastic).
    :return: ``rmse`` of the predictive mean; ``log_likelihood``: mean over examples of
        ``log (1/S) sum_s N(y | loc_s, sigma_s^2)``; ``predictive_std``: mean predictive standard
        deviation, and its two parts: ``aleatoric_std`` (the noise, ``sqrt(mean_s sigma_s^2)``) and
        ``epistemic_std`` (the sd of the means over the samples); ``coverage_90``: fraction of targets inside
        the mixture's central 90% interval (``0.05 <= F(y) <= 0.95`` with ``F`` the mixture's CDF; 0.9 when
        calibrated).
    """
    locs = locs.double()
    targets = targets.double().reshape(1, -1)
    sigma = torch.as_tensor(noise_scale, dtype=torch.float64).expand_as(locs)
    normals = torch.distributions.Normal(locs, sigma)
    mean = locs.mean(0)
    cdf = normals.cdf(targets).mean(0)
    tail = (1 - COVERAGE_MASS) / 2
    return {
        "rmse": float(((mean - targets[0]) ** 2).mean().sqrt()),
        "log_likelihood": float((torch.logsumexp(normals.log_prob(targets), 0) - math.log(locs.shape[0])).mean()),
        "predictive_std": float(predictive_std(locs, sigma).mean()),
        "aleatoric_std": float(sigma.pow(2).mean(0).sqrt().mean()),
        "epistemic_std": float(locs.std(0, unbiased=False).mean()),
        "coverage_90": float(((cdf >= tail) & (cdf <= 1 - tail)).double().mean()),
    }


#: Regression metrics in the units of the targets: their factor per unit of target scale (log-likelihoods shift).
_SCALED_METRICS = ("rmse", "predictive_std", "aleatoric_std", "epistemic_std")


def in_original_units(metrics: Dict[str, float], target_std: float) -> Dict[str, float]:
    """Regression ``metrics`` of standardised targets ``(y - mean) / target_std`` in the targets' original units:
    RMSE and the sds times ``target_std``, the log-likelihood minus ``log target_std`` (coverage unchanged)."""
    out = dict(metrics)
    for key in _SCALED_METRICS:
        if key in out:
            out[key] = out[key] * target_std
    if "log_likelihood" in out:
        out["log_likelihood"] = out["log_likelihood"] - math.log(target_std)
    return out


def predictive_std(locs: torch.Tensor, sigma) -> torch.Tensor:
    """Standard deviation of a mixture of ``N(loc_s, sigma_s^2)`` over the samples ``s`` (dim 0 of ``locs``);
    ``sigma`` a scalar or of the shape of ``locs``."""
    sigma = torch.as_tensor(sigma, dtype=locs.dtype).expand_as(locs)
    return (locs.var(0, unbiased=False) + sigma.pow(2).mean(0)).sqrt()


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-300).log()).sum(-1)


def _check_finite_outputs(outputs: torch.Tensor) -> None:
    bad = ~torch.isfinite(outputs.reshape(outputs.shape[0], outputs.shape[1], -1)).all(-1)  # (S, N): per draw, example
    if bool(bad.any()):
        raise ValueError(f"the network's outputs are NaN or inf under {int(bad.any(1).sum())} of {bad.shape[0]} "
                         f"posterior draws (on {int(bad.any(0).sum())} of {bad.shape[1]} examples): the posterior is "
                         "broken; look at the training loss and retrain with a lower learning rate")


def output_metrics(model: nn.Module, outputs: torch.Tensor, targets: torch.Tensor) -> Dict[str, float]:
    """The metrics of ``model``'s task from its outputs ``(S, N, ...)`` (see the ``*_metrics`` functions)."""
    if model.likelihood.task == "classification":
        return classification_metrics(outputs.softmax(-1), targets)
    locs, scales = model.likelihood.loc_scale(outputs)
    return regression_metrics(locs, torch.as_tensor(scales).detach().cpu(), targets)


def score(model: nn.Module, samples: Dict[str, torch.Tensor], loader: Iterable,
          ood_loader: Optional[Iterable] = None) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
    """Metrics of the predictive given by weight ``samples``, and the outputs they come from.

    :param ood_loader: an out-of-distribution set (classification): adds :func:`ood_metrics`, prefixed ``ood_``.
    :return: ``(metrics, outputs)`` with outputs ``{"outputs", "targets"[, "ood_outputs"]}``.
    """
    for x, y in _batches(model, loader):  # what fit checks: dtypes, target shapes, labels in range
        check_batch(model, x, y, "the evaluation data")
    outputs, targets = predict_with_samples(model, samples, loader)
    _check_finite_outputs(outputs)
    metrics = output_metrics(model, outputs, targets)
    raw = {"outputs": outputs, "targets": targets}
    if ood_loader is not None:
        if model.likelihood.task != "classification":
            raise ValueError("ood_loader: out-of-distribution metrics are defined for classifiers")
        raw["ood_outputs"], _ = predict_with_samples(model, samples, ood_loader)
        metrics.update({f"ood_{k}": v for k, v in ood_metrics(outputs.softmax(-1), raw["ood_outputs"].softmax(-1)).items()})
    return metrics, raw


def evaluate(model: nn.Module, guide: nn.Module, loader: Iterable, num_samples: int = 100,
             ood_loader: Optional[Iterable] = None) -> Dict[str, float]:
    """Posterior predictive metrics of ``model``/``guide`` on ``loader`` (and ``ood_loader``, see :func:`score`),
    from ``num_samples`` weight draws shared by both sets."""
    return score(model, posterior_samples(model, guide, loader, num_samples), loader, ood_loader)[0]


def predictive_curve(model: nn.Module, samples: Dict[str, torch.Tensor], x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Regression predictive over inputs ``x`` ``(N, D)``: ``{"x", "mean", "std"}`` (std includes the noise)."""
    loader = [(x, torch.zeros(len(x)))]
    outputs, _ = predict_with_samples(model, samples, loader)
    locs, sigma = model.likelihood.loc_scale(outputs)
    locs, sigma = locs.double(), torch.as_tensor(sigma).detach().cpu().double()
    return {"x": x[:, 0].double(), "mean": locs.mean(0), "std": predictive_std(locs, sigma)}


__all__ = ["evaluate", "predict", "posterior_samples", "predict_with_samples", "score", "classification_metrics",
           "regression_metrics", "in_original_units", "ood_metrics"]
