"""Guide builders: mean-field Normal, MAP (AutoDelta) and low-rank posteriors, with init choices.

:class:`MeanFieldNormal` is Pyro's :class:`~pyro.infer.autoguide.AutoNormal` with
two changes. At every real-support site it samples ``Normal(loc, scale)`` *at the
model's site*: Pyro's AutoNormal samples an auxiliary ``<name>_unconstrained``
site and puts a ``Delta`` at the model's site, so ``TraceMeanField_ELBO`` can
only find ``KL(Delta || prior) = -log p(w)``: a Monte Carlo KL. With the Normal
at the site, the KL is the closed form. And its scales are stored as ``log(scale)``
(see :class:`MeanFieldNormal`).

Initial locations (``init_loc``):

* ``"pytorch"``: a fresh standard PyTorch init of each layer (Kaiming-uniform
  weights, ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` biases), drawn from torch's RNG;
* ``"median"``: the prior median (zeros for centred priors), Pyro's default;
* a mapping ``{site name: tensor}``, e.g. :func:`pyro_bnn.model.networks.pretrained_weights` of a trained
  network: the guide's means start at those weights (other sites get the PyTorch init).
"""

from __future__ import annotations

import difflib
import math
from contextlib import ExitStack
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.util import sum_rightmost
from pyro.infer import autoguide
from pyro.infer.autoguide.initialization import init_to_median
from torch import nn
from torch.distributions import biject_to, constraints

from .checks import ArgumentError
from .model.priors import Prior, fan_in
from .options import INIT_LOCS, check_guide_options


def initialize_guide(guide: nn.Module, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> nn.Module:
    """Run ``guide`` once so an autoguide creates its (lazily built) parameters; returns ``guide``. An autoguide that
    has them already is left alone (running it again would only draw weights, moving torch's random stream)."""
    if getattr(guide, "prototype_trace", None) is not None:
        return guide
    with torch.no_grad():
        guide(x, y)
    return guide


def pytorch_init(model: nn.Module) -> Callable[[dict], torch.Tensor]:
    """An ``init_loc_fn`` giving each weight/bias site a standard PyTorch layer init."""

    def init_loc_fn(site: dict) -> torch.Tensor:
        layer_name, _, param_name = site["name"].rpartition(".")
        try:
            layer = model.get_submodule(layer_name)
            n_in = fan_in(layer)
        except (AttributeError, TypeError):
            return init_to_median(site)
        value = site["fn"].sample().detach()
        if param_name == "weight":
            nn.init.kaiming_uniform_(value, a=math.sqrt(5))
        else:
            bound = 1.0 / math.sqrt(n_in)
            nn.init.uniform_(value, -bound, bound)
        return value

    return init_loc_fn


def sample_site_names(model: nn.Module) -> list:
    """The names of the sample sites a PyroModule ``model``'s modules declare (``net.0.weight``, ...)."""
    return [f"{name}.{attribute}" if name else attribute for name, module in model.named_modules()
            for attribute in getattr(module, "_pyro_samples", {})]


def _from_values(model: nn.Module, values: Mapping[str, torch.Tensor]) -> Callable[[dict], torch.Tensor]:
    known = sample_site_names(model)
    unknown = sorted(set(values) - set(known))
    if unknown and set(unknown) <= {name.removesuffix("_unconstrained") for name, _ in model.named_parameters()}:
        raise ValueError(f"init_loc names {unknown}, parameters of the model's point-estimate layers (no prior, they "
                         "keep the values they hold): give the sample sites only, e.g. pretrained_weights(module, "
                         f"model=model); its sites are {known}")
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        raise ValueError(f"init_loc names {unknown}, which are not sites of the model"
                         + (f" (did you mean {close[0]}?)" if close else "") + f"; its sites are {known}")
    fallback = pytorch_init(model)

    def init_loc_fn(site: dict) -> torch.Tensor:
        if site["name"] not in values:
            return fallback(site)
        value = torch.as_tensor(values[site["name"]]).detach()
        shape = site["fn"].shape()
        if value.shape != shape:
            raise ValueError(f"init_loc: the value for {site['name']} has shape {tuple(value.shape)}, "
                             f"the site has {tuple(shape)}: pass weights of the same network")
        like = site["fn"].sample()
        return value.to(device=like.device, dtype=like.dtype).clone()  # a float64 copy of float32 weights too

    return init_loc_fn


def _init_loc_fn(model: nn.Module, init_loc: Union[str, Mapping]) -> Callable[[dict], torch.Tensor]:
    if isinstance(init_loc, Mapping):
        return _from_values(model, init_loc)
    if init_loc == "pytorch":
        return pytorch_init(model)
    if init_loc == "median":
        return init_to_median
    raise ArgumentError("init_loc", init_loc, joiner=" is ", fix=f"not known; choose one of {list(INIT_LOCS)}")


def _parts(vector: torch.Tensor, params: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """``vector``'s consecutive parts, each shaped like its parameter of ``params``."""
    return [part.view(p.shape) for part, p in zip(vector.detach().split([p.numel() for p in params]), params)]


def _shares(part: torch.Tensor, param: torch.Tensor) -> bool:
    return param.data_ptr() == part.data_ptr() and param.shape == part.shape and param.device == part.device


def _is_real(support: constraints.Constraint) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


class MeanFieldNormal(autoguide.AutoNormal):
    """Mean-field Normal guide whose Normal sits at the model's sites, so the KL has a closed form.

    Same parameters (``locs``, ``scales``) and arguments as :class:`~pyro.infer.autoguide.AutoNormal`, with
    the scales stored as ``log(scale)`` (AutoNormal stores ``softplus^-1(scale)``): the KL's ``log(scale)``
    is then the parameter itself and ``d scale / d parameter = scale``, which keeps the fused step
    (:mod:`pyro_bnn.objectives.fused`) to one ``exp`` per weight. For the small scales of a network's posterior the
    two agree (``softplus(u) ~ exp(u)`` for ``u << 0``).
    Sites with constrained support fall back to AutoNormal's transformed sampling.

    The guide can also hold its means and log-scales in two flat vectors (:meth:`flat_parameters`), which its
    per-site parameters are then views of: one storage read and trained either way (the fused step of
    :mod:`pyro_bnn.objectives.fused` trains the flat vectors; Pyro's optimizers, the per-site parameters).
    """

    scale_constraint = constraints.positive

    def loc_and_scale(self, name: str):
        """The mean and standard deviation of the guide's Normal at the model's site ``name``."""
        return self._get_loc_and_scale(name)

    def site_parameters(self, names: Sequence[str]) -> Tuple[List[nn.Parameter], List[nn.Parameter]]:
        """The guide's own parameters of the sites ``names``: their means and their log-scales."""
        return ([self.locs.get_parameter(name + "_unconstrained") for name in names],
                [self.scales.get_parameter(name + "_unconstrained") for name in names])

    def flat_parameters(self, names: Sequence[str]) -> Tuple[nn.Parameter, nn.Parameter]:
        """The means and log-scales of the sites ``names``, in that order, as two flat parameters whose storage the
        per-site parameters share (each a view of its part): updating either updates both, and the state dict, the
        per-site parameters' names and Pyro's optimizers are unchanged. Made at the first call, and again where a
        per-site parameter no longer shares the storage (``.to(device)``, ``load_state_dict`` with ``assign``)."""
        locs, log_scales = self.site_parameters(names)
        flat = self.__dict__.get("_flat", {}).get(tuple(names))  # not a registered parameter: no second copy saved
        if flat is None or not all(_shares(part, param) for vector, params in zip(flat, (locs, log_scales))
                                   for part, param in zip(_parts(vector, params), params)):
            flat = tuple(nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params])) for params in (locs, log_scales))
            for vector, params in zip(flat, (locs, log_scales)):
                for part, param in zip(_parts(vector, params), params):
                    param.data = part
            self.__dict__.setdefault("_flat", {})[tuple(names)] = flat
        return flat

    def forward(self, *args, **kwargs):
        """Pyro 1.9.2's ``AutoNormal.forward`` with one difference: at a site of real support the Normal is
        sampled at the site itself (AutoNormal samples an auxiliary ``<name>_unconstrained`` site and puts a
        ``Delta`` at the site), so ``TraceMeanField_ELBO`` finds a Normal-Normal pair and uses the
        closed-form KL. Constrained sites follow AutoNormal, its ``poutine.get_mask() is False`` branch
        included (no Jacobian where the model masks the site out).
        """
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs)
        result = {}
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            with ExitStack() as stack:
                for frame in site["cond_indep_stack"]:
                    if frame.vectorized:
                        stack.enter_context(plates[frame.name])
                result[name] = self._sample_site(name, site)
        return result

    def _sample_site(self, name: str, site: dict) -> torch.Tensor:
        loc, scale = self._get_loc_and_scale(name)
        normal = dist.Normal(loc, scale).to_event(self._event_dims[name])
        support = site["fn"].support
        if _is_real(support):
            return pyro.sample(name, normal)
        transform = biject_to(support)
        latent = pyro.sample(name + "_unconstrained", normal, infer={"is_auxiliary": True})
        value = transform(latent)
        if poutine.get_mask() is False:
            log_density = 0.0
        else:
            log_density = transform.inv.log_abs_det_jacobian(value, latent)
            log_density = sum_rightmost(log_density, log_density.dim() - value.dim() + site["fn"].event_dim)
        return pyro.sample(name, dist.Delta(value, log_density=log_density, event_dim=site["fn"].event_dim))


def is_mean_field(guide) -> bool:
    """Whether ``guide`` is a mean-field Normal posterior: it gives each site's mean and sd, ``loc_and_scale(name)``
    (the one protocol posterior health, learned prior scales and ``explain`` read; the fused step needs
    :class:`MeanFieldNormal`'s flat storage too)."""
    return callable(getattr(guide, "loc_and_scale", None))


def auto_normal(model: nn.Module, init_scale: float = 1e-3, init_loc: str = "pytorch") -> MeanFieldNormal:
    """Mean-field Normal posterior over every weight and bias (analytic KL with the mean-field ELBO).

    :param float init_scale: initial posterior standard deviation of every weight.
    :param init_loc: ``"pytorch"`` (standard layer init), ``"median"`` (prior median), or a mapping
        ``{site: tensor}`` of starting means (e.g. :func:`~pyro_bnn.model.networks.pretrained_weights`).
    """
    check_guide_options(init_scale=init_scale, init_loc=init_loc)
    return MeanFieldNormal(model, init_loc_fn=_init_loc_fn(model, init_loc), init_scale=float(init_scale))


def auto_delta(model: nn.Module, init_loc: str = "pytorch") -> autoguide.AutoDelta:
    """Point estimate (MAP): the 'KL' term becomes ``-log p(w)``, a weight-decay penalty."""
    check_guide_options(init_loc=init_loc)
    return autoguide.AutoDelta(model, init_loc_fn=_init_loc_fn(model, init_loc))


def auto_lowrank(
    model: nn.Module, rank: int = 10, init_scale: float = 1e-3, init_loc: str = "pytorch"
) -> autoguide.AutoLowRankMultivariateNormal:
    """Multivariate Normal with a rank-``rank`` plus diagonal covariance over all weights jointly."""
    check_guide_options(init_scale=init_scale, init_loc=init_loc, rank=rank)
    num_weights = sum(math.prod(shape) for layer in model.modules() for shape in Prior.site_shapes(layer).values())
    if num_weights and rank >= num_weights:
        raise ArgumentError("rank", rank, fix=f"use a rank below the number of weights of the model ({num_weights}); a "
                                              "full-rank covariance needs no low-rank factor")
    return autoguide.AutoLowRankMultivariateNormal(
        model, init_loc_fn=_init_loc_fn(model, init_loc), init_scale=float(init_scale), rank=int(rank)
    )


__all__ = ["MeanFieldNormal", "is_mean_field", "auto_normal", "auto_delta", "auto_lowrank", "initialize_guide", "pytorch_init"]

