"""Empirical-Bayes prior scales: each learned prior variance at its ELBO optimum given the guide.

For a site of ``m`` weights with ``q(w_i) = N(mu_i, sigma_i^2)`` and the prior ``N(m0, s^2)``::

    KL(q || p) = sum_i [ log s - log sigma_i + (sigma_i^2 + (mu_i - m0)^2) / (2 s^2) - 1/2 ]

is smallest at ``s^2 = S / m`` with ``S = sum_i (sigma_i^2 + (mu_i - m0)^2)``. Under a hyperprior
``s^2 ~ InvGamma(alpha, beta)`` the objective ``KL - log p(s^2)`` is smallest at
``s^2 = (S + 2 beta) / (m + 2 alpha + 2)`` (Wu et al. 2019, "Deterministic Variational Inference for
Robust Bayesian Neural Networks"; Edward2's ``NormalEmpiricalBayesKLDivergence``). With
``beta = (1 + alpha) s0^2`` the hyperprior's mode is the prior's configured scale ``s0``, and ``alpha``
says how strongly it holds there.

The prior scale is a point estimate of a hierarchical model, ``p(w, s) = p(s) p(w | s)``, so the
objective ``NLL + KL(q || p(. | s)) - log p(s^2)`` is still its exact (negative) ELBO. Because ``s^2``
is the minimiser, the gradients of the objective with respect to ``mu`` and ``sigma`` equal those with
``s^2`` held fixed (envelope theorem): each training step sets ``s^2`` from the current guide, without
gradient, then takes an ordinary step. Weights and biases of a layer are separate sites, so each gets
its own scale.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn


class EmpiricalBayes:
    """The learned prior scales of a model whose prior has ``learn_scale=True``.

    :param model: a :class:`~pyro_bnn.model.networks.BayesianModel`.
    :ivar names: the sites whose prior scale is learned, in the network's order.
    """

    def __init__(self, model: nn.Module):
        prior = model.prior
        if not getattr(prior, "learn_scale", False):
            raise ValueError(f"{prior!r} does not learn its scale: use NormalPrior(..., learn_scale=True)")
        self.alpha = float(prior.hyperprior_alpha)
        self.names: List[str] = []
        self._scale_buffers: List[torch.Tensor] = []  # each site's prior scale, written by set_variances
        self._prior_locs: List[float] = []
        sizes, betas = [], []
        for layer_name in prior.layer_names(model.net):
            layer = model.net.get_submodule(layer_name)
            s0 = prior.layer_scale("net." + layer_name, layer)
            for param_name, shape in prior.site_shapes(layer).items():
                self.names.append(f"net.{layer_name}.{param_name}")
                self._scale_buffers.append(layer.get_buffer(f"{param_name}_prior_scale"))
                self._prior_locs.append(float(layer.get_buffer(f"{param_name}_prior_loc")))
                sizes.append(math.prod(shape))
                betas.append((1.0 + self.alpha) * s0 ** 2)
        device = next(iter(model.buffers())).device
        self.sizes = torch.tensor(sizes, dtype=torch.float32, device=device)
        self.betas = torch.tensor(betas, dtype=torch.float32, device=device)

    @staticmethod
    def of(model: nn.Module) -> Optional["EmpiricalBayes"]:
        """The learned scales of ``model``; None when its prior's scales are fixed."""
        return EmpiricalBayes(model) if getattr(getattr(model, "prior", None), "learn_scale", False) else None

    def optimal_variances(self, sum_squares: torch.Tensor) -> torch.Tensor:
        """``s^2`` per learned site from ``S = sum(sigma^2 + (mu - m0)^2)`` per site (no gradient)."""
        return optimal_variances(sum_squares, self.sizes, self.alpha, self.betas)

    def hyperprior_nll(self, variances: torch.Tensor) -> torch.Tensor:
        """``-sum log InvGamma(s^2; alpha, beta)`` over the sites (0 without a hyperprior)."""
        return hyperprior_nll(variances, self.alpha, self.betas)

    @torch.no_grad()
    def set_variances(self, variances: torch.Tensor) -> None:
        """Write ``s = sqrt(s^2)`` into the model's prior buffers (saved with the posterior)."""
        for buffer, scale in zip(self._scale_buffers, variances.sqrt()):
            buffer.fill_(scale)

    def scales(self) -> Dict[str, float]:
        """The current prior scale of every learned site, ``{site: s}``."""
        return {name: float(buffer) for name, buffer in zip(self.names, self._scale_buffers)}

    @torch.no_grad()
    def update(self, guide: nn.Module) -> torch.Tensor:
        """Set every learned scale to its optimum given a mean-field ``guide``; returns the hyperprior's NLL."""
        sums = []
        for name, m0 in zip(self.names, self._prior_locs):
            loc, scale = guide.loc_and_scale(name)
            sums.append((loc - m0).pow(2).sum() + scale.pow(2).sum())
        return self.update_from_sums(torch.stack(sums).to(self.sizes.dtype))[1]

    @torch.no_grad()
    def update_from_sums(self, sum_squares: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Set every learned scale to its optimum given ``S = sum(sigma^2 + (mu - m0)^2)`` per learned site (however
        the guide's parameters are held); returns the variances ``s^2`` and the hyperprior's NLL. The one update of
        every path (Pyro's traces, the fused step)."""
        variances = self.optimal_variances(sum_squares)
        self.set_variances(variances)
        return variances, self.hyperprior_nll(variances)


def optimal_variances(sum_squares: torch.Tensor, sizes: torch.Tensor, alpha: float, betas: torch.Tensor) -> torch.Tensor:
    """The optimal prior variance ``s^2`` of each site of ``sizes`` weights from its ``S = sum(sigma^2 + (mu - m0)^2)``:
    ``S / m``, or ``(S + 2 beta) / (m + 2 alpha + 2)`` under the hyperprior ``InvGamma(alpha, beta)``. The last
    dimension is the sites' (a batch of replicates: ``(R, S)``)."""
    if alpha == 0:
        return sum_squares / sizes
    return (sum_squares + 2 * betas) / (sizes + 2 * alpha + 2)


def hyperprior_nll(variances: torch.Tensor, alpha: float, betas: torch.Tensor) -> torch.Tensor:
    """``-sum log InvGamma(s^2; alpha, beta)`` over the sites, the last dimension (0 without a hyperprior)."""
    if alpha == 0:
        return torch.zeros(variances.shape[:-1], device=variances.device)
    log_density = alpha * betas.log() - math.lgamma(alpha) - (alpha + 1) * variances.log() - betas / variances
    return -log_density.sum(-1)


def prior_scales(model: nn.Module) -> Dict[str, float]:
    """The current prior scale of every learned site, ``{site: s}`` (empty when none is learned)."""
    learned = EmpiricalBayes.of(model)
    return learned.scales() if learned is not None else {}


__all__ = ["EmpiricalBayes", "prior_scales"]
