"""The metrics of a posterior predictive: pure functions of its draws' outputs (tensors in, numbers out), below
the model (its likelihoods score with them) and the evaluation (which runs the draws).

A likelihood says which of them score it (:meth:`~pyro_bnn.model.likelihoods.Likelihood.metrics`). Calibration error
comes from torchmetrics, AUROC from scikit-learn, each imported where it is used (``import pyro_bnn`` stays fast).
"""

from __future__ import annotations

import math
from typing import Dict

import torch

ECE_BINS = 15
#: Probability mass of the central predictive interval whose coverage regression reports.
COVERAGE_MASS = 0.9


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
        "ece": float(_calibration_error(mean, targets, num_classes=mean.shape[-1], n_bins=num_bins)),
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
        metrics[f"auroc_{key}"] = float(_roc_auc(labels, torch.cat([u_in[key], u_out[key]]).numpy()))
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
    mixture = normal_mixture(locs, sigma)
    cdf = normals.cdf(targets).mean(0)
    tail = (1 - COVERAGE_MASS) / 2
    return {
        "rmse": float(((mixture["mean"] - targets[0]) ** 2).mean().sqrt()),
        "log_likelihood": float((torch.logsumexp(normals.log_prob(targets), 0) - math.log(locs.shape[0])).mean()),
        "predictive_std": float(mixture["std"].mean()),
        "aleatoric_std": float(mixture["aleatoric_std"].mean()),
        "epistemic_std": float(mixture["epistemic_std"].mean()),
        "coverage_90": float(((cdf >= tail) & (cdf <= 1 - tail)).double().mean()),
    }


def normal_mixture(locs: torch.Tensor, sigma: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per example, the mixture of ``N(loc_s, sigma_s^2)`` over the draws ``s`` (dim 0; ``sigma`` of the shape of
    ``locs``): its ``mean`` and ``std``, and the two parts of its variance, ``aleatoric_std`` (the noise,
    ``sqrt(mean_s sigma_s^2)``) and ``epistemic_std`` (the sd of the draws' means)."""
    return {"mean": locs.mean(0), "std": predictive_std(locs, sigma), "aleatoric_std": sigma.pow(2).mean(0).sqrt(),
            "epistemic_std": locs.std(0, unbiased=False)}


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


def _calibration_error(*args, **kwargs):
    from torchmetrics.functional.classification import multiclass_calibration_error

    return multiclass_calibration_error(*args, **kwargs)


def _roc_auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(labels, scores)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-300).log()).sum(-1)


__all__ = ["classification_metrics", "regression_metrics", "ood_metrics", "in_original_units", "uncertainty",
           "reliability_bins", "predictive_std", "normal_mixture"]
