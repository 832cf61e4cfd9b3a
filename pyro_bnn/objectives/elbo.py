"""The terms of a BNN's loss: expected negative log-likelihood and KL(q || p), per site.

For one minibatch of ``B`` examples out of ``N``, with weights ``w ~ q``::

    -ELBO  ~=  NLL + KL
    NLL     = -(N / B) * sum_{n in batch} log p(y_n | x_n, w)     (whole-data units)
    KL      = sum over every weight and bias site of KL(q(w_site) || p(w_site))

``kl="analytic"`` uses the closed form ``kl_divergence(q, p)`` where one is
registered (Normal/Normal for :class:`~pyro_bnn.guides.MeanFieldNormal`): this is
exactly Pyro's :class:`~pyro.infer.TraceMeanField_ELBO`. ``kl="mc"`` uses
``log q(w) - log p(w)`` at the sampled ``w``: exactly Pyro's
:class:`~pyro.infer.Trace_ELBO`. Guide-only (auxiliary) sites add their
``log q`` to the KL under their own name. Dividing both terms by ``N`` gives
TensorFlow Probability's per-example form ``mean NLL + KL / N``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

import torch
from pyro import poutine
from pyro.distributions import Delta
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import site_is_subsample
from torch.distributions import Independent, kl_divergence

from ..checks import ArgumentError

KL_KINDS = ("analytic", "mc")
#: ELBO names as used by :func:`pyro_bnn.fit` and configs, and the KL estimate each one uses.
ELBO_KL = {"mean_field": "analytic", "trace": "mc"}


class StepRecord(NamedTuple):
    """One training step's loss terms as one detached vector, ``values[i]`` the term named ``keys[i]``: the epoch's
    sums, the loss monitor and a data-parallel all-reduce each read it whole (one tensor a step, not one a term)."""

    keys: Tuple[str, ...]
    values: torch.Tensor

    @staticmethod
    def of(terms: Mapping[str, torch.Tensor]) -> "StepRecord":
        """The record of ``{name: 0-d tensor}``."""
        return StepRecord(tuple(terms), torch.stack(list(terms.values())).detach())

    def as_dict(self) -> Dict[str, torch.Tensor]:
        return dict(zip(self.keys, self.values))


@dataclass
class ElboTerms:
    """NLL and KL of one minibatch (averaged over particles), in whole-data units.

    :ivar nll: expected negative log-likelihood of the whole data set (``N/B`` times the batch sum).
    :ivar kl: KL(q || p) summed over all sites (closed form or Monte Carlo).
    :ivar kl_sites: the KL of each sample site, ``{site name: tensor}``.
    :ivar num_data: ``N``, for the per-example units.
    :ivar mc_sites: sites whose KL was sampled although the closed form was asked for.
    :ivar hyperprior: ``-log p(s^2)`` of the learned prior variances under their hyperprior
        (:mod:`pyro_bnn.objectives.empirical_bayes`; None when no prior scale is learned): part of the loss, no gradient.
    """

    nll: torch.Tensor
    kl: torch.Tensor
    kl_sites: Dict[str, torch.Tensor]
    num_data: int
    mc_sites: tuple = field(default_factory=tuple)
    hyperprior: Optional[torch.Tensor] = None

    @property
    def loss(self) -> torch.Tensor:
        """-ELBO = NLL + KL (+ the hyperprior's NLL of learned prior scales), whole-data units."""
        loss = self.nll + self.kl
        return loss if self.hyperprior is None else loss + self.hyperprior

    def kl_layers(self) -> Dict[str, torch.Tensor]:
        """KL summed per layer (a site ``net.3.weight`` belongs to layer ``net.3``)."""
        layers: Dict[str, torch.Tensor] = {}
        for name, value in self.kl_sites.items():
            layer = name.rpartition(".")[0] or name
            layers[layer] = layers.get(layer, 0.0) + value
        return layers

    def record(self) -> StepRecord:
        """``loss``, ``nll``, ``kl``, ``hyperprior`` (where prior scales are learned) and ``kl.<layer>``, detached."""
        terms = {"loss": self.loss, "nll": self.nll, "kl": self.kl}
        if self.hyperprior is not None:
            terms["hyperprior"] = self.hyperprior
        terms.update({f"kl.{layer}": value for layer, value in self.kl_layers().items()})
        return StepRecord.of(terms)

    def per_example(self) -> Dict[str, float]:
        """TFP's units: ``mean NLL``, ``KL / N`` and their sum."""
        n = self.num_data
        return {"nll": float(self.nll) / n, "kl": float(self.kl) / n, "loss": float(self.loss) / n}


def _is_point_mass(fn) -> bool:
    while isinstance(fn, Independent):
        fn = fn.base_dist
    return isinstance(fn, Delta)


def _closed_form_kl(guide_site: dict, model_site: dict) -> Optional[torch.Tensor]:
    """``KL(q || p)`` of one site where one is registered (scaled like the site), else None.

    A guide ``Delta`` (Pyro's AutoNormal, AutoDelta) has a registered "KL" that is
    ``-log p(w)`` at its point: it is returned, and counted as sampled by the caller.
    """
    try:
        value = kl_divergence(guide_site["fn"], model_site["fn"])
    except NotImplementedError:
        return None
    return scale_and_mask(value, scale=guide_site["scale"], mask=guide_site["mask"]).sum()


def elbo_particle(model, guide, *args, kl: str = "analytic", **kwargs) -> ElboTerms:
    """NLL and KL for one draw of the weights from ``guide`` (differentiable).

    Log-densities are computed only where they are needed: for the observations, and for the
    latent sites whose KL is sampled (all of them with ``kl="mc"``).
    """
    if kl not in KL_KINDS:
        raise ArgumentError("kl", kl, joiner=" is ", fix=f"not known; choose one of {list(KL_KINDS)}")
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    latent = [name for name, site in model_trace.nodes.items()
              if site["type"] == "sample" and not site_is_subsample(site) and not site["is_observed"]]
    kl_sites: Dict[str, torch.Tensor] = {}
    if kl == "analytic":
        for name in latent:
            value = _closed_form_kl(guide_trace.nodes[name], model_trace.nodes[name])
            if value is not None:
                kl_sites[name] = value
    sampled = {name for name in latent if name not in kl_sites}
    auxiliary = [name for name, site in guide_trace.nodes.items()
                 if site["type"] == "sample" and not site_is_subsample(site) and name not in model_trace.nodes]
    model_trace.compute_log_prob(site_filter=lambda name, site: site["is_observed"] or name in sampled)
    guide_trace.compute_log_prob(site_filter=lambda name, site: name in sampled or name in auxiliary)
    nll = 0.0
    for site in model_trace.nodes.values():
        if site["type"] == "sample" and site["is_observed"] and not site_is_subsample(site):
            nll = nll - site["log_prob_sum"]
    for name in sampled:
        kl_sites[name] = guide_trace.nodes[name]["log_prob_sum"] - model_trace.nodes[name]["log_prob_sum"]
    for name in auxiliary:
        kl_sites[name] = guide_trace.nodes[name]["log_prob_sum"]
    order = [*latent, *auxiliary]  # model order, then auxiliary
    kl_sites = {name: kl_sites[name] for name in order}
    # sampled where a closed form was asked for: no registered KL, auxiliary sites, point masses (-log p(w))
    mc_sites = tuple(name for name in order if kl == "analytic" and (
        name in sampled or name in auxiliary or _is_point_mass(guide_trace.nodes[name]["fn"])))
    total_kl = sum(kl_sites.values()) if kl_sites else torch.zeros(())
    return ElboTerms(torch.as_tensor(nll), total_kl, kl_sites, _num_data(model), mc_sites)


def elbo_terms(model, guide, *args, kl: str = "analytic", num_particles: int = 1, **kwargs) -> ElboTerms:
    """NLL and KL of one minibatch, averaged over ``num_particles`` draws of the weights.

    ``elbo_terms(model, guide, x, y).loss`` is the minibatch estimate of -ELBO,
    the quantity Pyro's ELBO classes return from ``differentiable_loss``.
    """
    if int(num_particles) < 1:
        raise ArgumentError("num_particles", num_particles, fix="use at least one particle")
    return average_terms([elbo_particle(model, guide, *args, kl=kl, **kwargs) for _ in range(int(num_particles))])


def average_terms(particles: List[ElboTerms]) -> ElboTerms:
    """The mean of the terms of several weight draws (the draw itself when there is one)."""
    if len(particles) == 1:
        return particles[0]
    k = len(particles)
    return ElboTerms(
        nll=sum(p.nll for p in particles) / k,
        kl=sum(p.kl for p in particles) / k,
        kl_sites={name: sum(p.kl_sites[name] for p in particles) / k for name in particles[0].kl_sites},
        num_data=particles[0].num_data,
        mc_sites=particles[0].mc_sites,
        hyperprior=particles[0].hyperprior,
    )


def _num_data(model) -> Optional[int]:
    return getattr(model, "num_data", None)


__all__ = ["ElboTerms", "elbo_terms"]
