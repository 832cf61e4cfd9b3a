"""The closed-form KL divergence between Normals, written once in the library.

Per weight, ``KL(N(mu, sigma^2) || N(m0, s0^2)) = log(s0 / sigma) + (sigma^2 + (mu - m0)^2) / (2 s0^2) - 1/2``.
Over the ``n`` weights of a site that share one prior it needs only two sums of the guide's parameters::

    KL = n/2 (log s0^2 - 1) - sum log sigma + sum(sigma^2 + (mu - m0)^2) / (2 s0^2)

:class:`NormalKLPrior` holds the prior's part (computed once per prior, not per step); :func:`normal_kl_of_sums`
is the formula; :func:`normal_kl` is the same formula per weight. The fused mean-field step
(:class:`~pyro_bnn.objectives.fused.MeanFieldSample`) evaluates it per site and writes out its gradient
(``d/d mu = (mu - m0) / s0^2``, ``d/d log sigma = sigma^2 / s0^2 - 1``); posterior health and ``explain`` read it
per weight.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import torch


class NormalKLPrior(NamedTuple):
    """The prior's part of the KL of sites of ``size`` weights under ``N(m0, variance)``.

    :ivar constant: ``size / 2 * (log variance - 1)``.
    :ivar half_precision: ``1 / (2 variance)``.
    """

    constant: torch.Tensor
    half_precision: torch.Tensor

    @staticmethod
    def of(variance: torch.Tensor, size: Union[torch.Tensor, int] = 1) -> "NormalKLPrior":
        """The prior part for the prior variances ``variance`` (per site, or per weight with ``size`` 1)."""
        half = 0.5 * size
        return NormalKLPrior(half * variance.log() - half, 0.5 * variance.reciprocal())


def normal_kl_of_sums(sum_log_scale: torch.Tensor, sum_squares: torch.Tensor, prior: NormalKLPrior) -> torch.Tensor:
    """``KL(q || p)`` from the guide's sums ``sum log sigma`` and ``sum(sigma^2 + (mu - m0)^2)`` (per site, or per
    weight) and the prior's part; a new tensor, the inputs untouched."""
    return torch.mul(sum_squares, prior.half_precision).sub_(sum_log_scale).add_(prior.constant)


def normal_kl(loc: torch.Tensor, scale: torch.Tensor, prior_loc, prior_scale) -> torch.Tensor:
    """``KL(N(loc, scale^2) || N(prior_loc, prior_scale^2))`` per weight (broadcast), as
    :func:`torch.distributions.kl_divergence` of the two Normals gives it."""
    prior_scale = torch.as_tensor(prior_scale, dtype=scale.dtype, device=scale.device)
    return normal_kl_of_sums(scale.log(), scale * scale + (loc - prior_loc) ** 2, NormalKLPrior.of(prior_scale ** 2))
