"""Posterior health: whether a mean-field posterior has moved, and where it has fallen back to the prior.

For every weight site of a :class:`~pyro_bnn.guides.MeanFieldNormal` guide (each layer's weights and biases
apart), :func:`posterior_health` reports

* ``mean_sd``: the mean posterior standard deviation, and ``sd_ratio``: its ratio to the guide's initial
  scale (``init_scale``): near 1, the posterior has not moved from where training started;
* ``snr``: the median signal-to-noise ratio ``|mu| / sigma`` (large: the weight is nearly a point estimate);
* ``at_prior``: the share of weights whose own KL to the prior is below :data:`AT_PRIOR_KL` nats (they
  carry no information from the data: "fallen back to the prior"; Normal priors only, else None).

:func:`health_warnings` turns those figures into what to change.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import nn

from ..guides import is_mean_field
from ..model.priors import normal_params, site_prior
from ..objectives.normal_kl import normal_kl

#: A weight whose KL to its prior is below this many nats has fallen back to the prior.
AT_PRIOR_KL = 0.05
#: Below this ratio of mean posterior sd to the initial scale, the posterior has barely moved.
UNMOVED_RATIO = 2.0
#: Above this share of weights at the prior (all sites together), the posterior has collapsed to it.
COLLAPSED_SHARE = 0.99


@torch.no_grad()
def posterior_health(model: nn.Module, guide: nn.Module, init_scale: float) -> Dict[str, Dict[str, Optional[float]]]:
    """Per site: ``size``, ``mean_sd``, ``sd_ratio``, ``snr``, ``at_prior`` (see the module's docstring).

    :param guide: a :class:`~pyro_bnn.guides.MeanFieldNormal`, run at least once.
    :param float init_scale: the scale the guide started from.
    """
    if not is_mean_field(guide):
        raise TypeError(f"posterior health is defined for the mean-field Normal guide, not a {type(guide).__name__}")
    health = {}
    for name, _ in guide.prototype_trace.iter_stochastic_nodes():
        loc, scale = guide.loc_and_scale(name)
        prior = normal_params(site_prior(model, name))
        at_prior = None
        if prior is not None:
            per_weight = normal_kl(loc, scale, *prior)
            at_prior = float((per_weight < AT_PRIOR_KL).double().mean())
        health[name] = {"size": loc.numel(), "mean_sd": float(scale.mean()),
                        "sd_ratio": float(scale.mean()) / float(init_scale),
                        "snr": float((loc.abs() / scale).median()), "at_prior": at_prior}
    return health


def health_warnings(health: Dict[str, Dict[str, Optional[float]]]) -> List[str]:
    """What to change when the posterior is still at its initial scale, or has collapsed to the prior."""
    sizes = {name: h["size"] for name, h in health.items()}
    total = sum(sizes.values())
    ratio = sum(h["sd_ratio"] * sizes[name] for name, h in health.items()) / total
    warnings = []
    if ratio < UNMOVED_RATIO:
        warnings.append(
            f"the posterior has barely moved: its mean sd is {ratio:.2f}x the guide's init_scale (below "
            f"{UNMOVED_RATIO:g}x), so it is close to a point estimate and its uncertainty means little; train "
            "longer or with a larger inference.lr, or start from a larger guide.init_scale")
    known = [(name, h) for name, h in health.items() if h["at_prior"] is not None]
    if known:
        share = sum(h["at_prior"] * sizes[name] for name, h in known) / sum(sizes[name] for name, _ in known)
        if share > COLLAPSED_SHARE:
            warnings.append(
                f"the posterior has collapsed to the prior: {share:.1%} of the weights carry no information from "
                "the data, so predictions are near chance; use a wider or learned prior (prior.scale, "
                "prior.learn_scale), a smaller network, or a KL weight below 1 (inference.kl_weight)")
    return warnings


def format_health(health: Dict[str, Dict[str, Optional[float]]]) -> str:
    """The per-site table ``python -m pyro_bnn.explain`` prints."""
    lines = ["Posterior health per site (sd ratio: mean sd / the guide's init_scale; SNR: median |mu|/sigma; "
             f"at prior: share of weights with KL < {AT_PRIOR_KL} nats)",
             f"{'site':14} {'scalars':>8} {'mean sd':>10} {'sd ratio':>9} {'SNR':>9} {'at prior':>9}"]
    for name, h in health.items():
        at_prior = "-" if h["at_prior"] is None else f"{h['at_prior']:.1%}"
        lines.append(f"{name:14} {h['size']:8d} {h['mean_sd']:10.4g} {h['sd_ratio']:9.3g} {h['snr']:9.3g} "
                     f"{at_prior:>9}")
    return "\n".join(lines + [f"warning: {w}" for w in health_warnings(health)])


__all__ = ["posterior_health"]
