"""Posterior predictive: weight draws, the network's outputs under them, and their scores.

:func:`posterior_samples` draws ``S`` weight samples from the guide once;
:func:`predict_with_samples` runs every batch of a loader through the model under
each of them (:class:`pyro.infer.Predictive`), so every example, in or out of
distribution, is scored by the same ``S`` networks. The samples may come from
elsewhere too (NUTS, see :mod:`pyro_bnn.evaluation.reference`).

The scores are the model's likelihood's (:mod:`pyro_bnn.metrics`).
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple

import pyro
import torch
from pyro import poutine
from pyro.infer import Predictive
from pyro.poutine.util import site_is_subsample
from torch import nn

from ..batch_checks import check_batch, check_pair
from ..model.networks import device_of
from ..options import check_num_samples


def _batches(model: nn.Module, loader: Iterable, first_only: bool = False) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The batches of ``loader`` on the model's device (only the first with ``first_only``), each checked as ``fit``
    checks its first: a pair of tensors, finite inputs of the model's dtype and shape, targets the likelihood reads."""
    device = device_of(model)
    batches = []
    for batch in loader:
        x, y = check_pair(batch, "the evaluation data")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise ValueError("the evaluation inputs x hold NaN or inf values: clean or impute the data first")
        check_batch(model, x, y, "the evaluation data")
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


def _check_finite_outputs(outputs: torch.Tensor) -> None:
    bad = ~torch.isfinite(outputs.reshape(outputs.shape[0], outputs.shape[1], -1)).all(-1)  # (S, N): per draw, example
    if bool(bad.any()):
        raise ValueError(f"the network's outputs are NaN or inf under {int(bad.any(1).sum())} of {bad.shape[0]} "
                         f"posterior draws (on {int(bad.any(0).sum())} of {bad.shape[1]} examples): the posterior is "
                         "broken; look at the training loss and retrain with a lower learning rate")


def output_metrics(model: nn.Module, outputs: torch.Tensor, targets: torch.Tensor) -> Dict[str, float]:
    """The metrics of ``model``'s likelihood from its outputs ``(S, N, ...)``
    (:meth:`~pyro_bnn.model.likelihoods.Likelihood.metrics`)."""
    return model.likelihood.metrics(outputs, targets)


def score(model: nn.Module, samples: Dict[str, torch.Tensor], loader: Iterable,
          ood_loader: Optional[Iterable] = None) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
    """Metrics of the predictive given by weight ``samples``, and the outputs they come from.

    :param ood_loader: an out-of-distribution set (classification): adds :func:`ood_metrics`, prefixed ``ood_``.
    :return: ``(metrics, outputs)`` with outputs ``{"outputs", "targets"[, "ood_outputs"]}``.
    """
    outputs, targets = predict_with_samples(model, samples, loader)  # checks each batch as fit checks its first
    _check_finite_outputs(outputs)
    metrics = output_metrics(model, outputs, targets)
    raw = {"outputs": outputs, "targets": targets}
    if ood_loader is not None:
        if not model.likelihood.ood_metric_names:
            raise ValueError(f"ood_loader: out-of-distribution metrics are defined for classifiers, not a "
                             f"{type(model.likelihood).__name__} likelihood; leave ood_loader unset")
        raw["ood_outputs"], _ = predict_with_samples(model, samples, ood_loader)
        metrics.update(model.likelihood.ood_metrics(outputs, raw["ood_outputs"]))
    return metrics, raw


def evaluate(model: nn.Module, guide: nn.Module, loader: Iterable, num_samples: int = 100,
             ood_loader: Optional[Iterable] = None) -> Dict[str, float]:
    """Posterior predictive metrics of ``model``/``guide`` on ``loader`` (and ``ood_loader``, see :func:`score`),
    from ``num_samples`` weight draws shared by both sets."""
    return score(model, posterior_samples(model, guide, loader, num_samples), loader, ood_loader)[0]


def predictive_curve(model: nn.Module, samples: Dict[str, torch.Tensor], x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The predictive over 1-D inputs ``x`` ``(N, 1)``: ``{"x", **the likelihood's summary}``
    (:meth:`~pyro_bnn.model.likelihoods.Likelihood.summary`; regression: ``mean`` and ``std``, the noise included)."""
    outputs, _ = predict_with_samples(model, samples, [(x, torch.zeros(len(x)))])
    return {"x": x[:, 0].double(), **{k: v.cpu() for k, v in model.likelihood.summary(outputs).items()}}


__all__ = ["evaluate", "predict", "posterior_samples", "predict_with_samples", "score"]
