"""Posterior predictive and its metrics.

:func:`predict` draws ``S`` weight samples from the guide once, with
:class:`pyro.infer.Predictive`, and runs every test batch through the model
under each of them, so each example is scored by the same ``S`` networks.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, Tuple

import torch
from pyro import poutine
from pyro.infer import Predictive
from pyro.poutine.util import site_is_subsample
from torch import nn

from .inference import _device

ECE_BINS = 15


@torch.no_grad()
def predict(model: nn.Module, guide: nn.Module, loader: Iterable, num_samples: int = 100) -> Tuple[torch.Tensor, torch.Tensor]:
    """Network outputs under ``num_samples`` posterior weight draws.

    :return: ``(outputs, targets)``: outputs of shape ``(S, N, ...)`` (logits or regression means),
        targets of shape ``(N,)``, both on the CPU.
    """
    if int(num_samples) < 1:
        raise ValueError(f"num_samples={num_samples}: draw at least one posterior sample")
    device = _device(model)
    batches = [(x.to(device), y.to(device)) for x, y in loader]
    if not batches:
        raise ValueError("the evaluation data is empty")
    x0, y0 = batches[0]
    model_trace = poutine.trace(model).get_trace(x0, y0)
    latent = [n for n, site in model_trace.iter_stochastic_nodes() if not site_is_subsample(site)]
    traces = [poutine.trace(guide).get_trace(x0, y0) for _ in range(int(num_samples))]
    draws = {name: torch.stack([t.nodes[name]["value"] for t in traces]) for name in latent}
    run = Predictive(model, posterior_samples=draws, return_sites=["_RETURN"])
    outputs = torch.cat([run(x)["_RETURN"].cpu() for x, _ in batches], dim=1)
    return outputs, torch.cat([y.cpu() for _, y in batches])


def classification_metrics(probs: torch.Tensor, targets: torch.Tensor, num_bins: int = ECE_BINS) -> Dict[str, float]:
    """Metrics of the posterior predictive of a classifier.

    :param probs: class probabilities of each posterior sample, ``(S, N, C)`` (or ``(N, C)`` for one).
    :param targets: true classes, ``(N,)``.
    :return: ``accuracy``; ``nll`` (of the predictive mean); ``brier`` (sum over classes, mean over
        examples); ``ece`` (``num_bins`` equal-width confidence bins); ``entropy`` (of the predictive
        mean); ``expected_entropy`` (mean over samples); ``mutual_information`` (their difference).
    """
    probs = probs.double()
    if probs.dim() == 2:
        probs = probs.unsqueeze(0)
    mean = probs.mean(0)
    targets = targets.long()
    onehot = torch.nn.functional.one_hot(targets, mean.shape[-1]).double()
    confidence, predicted = mean.max(-1)
    correct = (predicted == targets).double()
    entropy = _entropy(mean)
    expected_entropy = _entropy(probs).mean(0)
    return {
        "accuracy": float(correct.mean()),
        "nll": float(-mean.gather(-1, targets[:, None]).clamp_min(1e-300).log().mean()),
        "brier": float(((mean - onehot) ** 2).sum(-1).mean()),
        "ece": expected_calibration_error(confidence, correct, num_bins),
        "entropy": float(entropy.mean()),
        "expected_entropy": float(expected_entropy.mean()),
        "mutual_information": float((entropy - expected_entropy).mean()),
    }


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, num_bins: int = ECE_BINS) -> float:
    """ECE: sum over equal-width bins ``(k/M, (k+1)/M]`` of ``|accuracy - confidence| * bin fraction``."""
    bins = (confidence * num_bins).ceil().clamp(1, num_bins).long() - 1
    ece = 0.0
    for k in range(num_bins):
        in_bin = bins == k
        if in_bin.any():
            ece += float(in_bin.double().mean() * (correct[in_bin].mean() - confidence[in_bin].mean()).abs())
    return ece


def regression_metrics(locs: torch.Tensor, noise_scale, targets: torch.Tensor) -> Dict[str, float]:
    """Metrics of a Gaussian-likelihood posterior predictive (a mixture of S Normals).

    :param locs: predicted means of each posterior sample, ``(S, N)``.
    :param noise_scale: the likelihood's noise standard deviation (scalar).
    :return: ``rmse`` of the predictive mean; ``log_likelihood``: mean over examples of
        ``log (1/S) sum_s N(y | loc_s, sigma^2)``; ``predictive_std``: mean predictive standard deviation.
    """
    locs = locs.double()
    targets = targets.double().reshape(1, -1)
    sigma = torch.as_tensor(noise_scale, dtype=torch.float64)
    log_probs = torch.distributions.Normal(locs, sigma).log_prob(targets)
    mean = locs.mean(0)
    variance = locs.var(0, unbiased=False) + sigma**2
    return {
        "rmse": float(((mean - targets[0]) ** 2).mean().sqrt()),
        "log_likelihood": float((torch.logsumexp(log_probs, 0) - math.log(locs.shape[0])).mean()),
        "predictive_std": float(variance.sqrt().mean()),
    }


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-300).log()).sum(-1)


def evaluate(model: nn.Module, guide: nn.Module, loader: Iterable, num_samples: int = 100) -> Dict[str, float]:
    """Posterior predictive metrics of ``model``/``guide`` on ``loader`` (see the ``*_metrics`` functions)."""
    outputs, targets = predict(model, guide, loader, num_samples)
    if model.likelihood.task == "classification":
        return classification_metrics(outputs.softmax(-1), targets)
    return regression_metrics(outputs.squeeze(-1), model.likelihood.scale.detach().cpu(), targets)
