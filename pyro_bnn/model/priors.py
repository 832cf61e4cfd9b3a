"""Prior objects that turn a network's weights and biases into Pyro sample sites.

A prior is applied to an ordinary ``torch.nn`` network whose modules are
:class:`~pyro.nn.PyroModule` instances: every ``nn.Parameter`` of every layer is
deleted and replaced by a :class:`~pyro.nn.PyroSample` whose distribution is
built from two buffers of the layer, ``<param>_prior_loc`` and
``<param>_prior_scale``. Buffers move with ``.to(device)`` and are saved in the
model's ``state_dict``, so the prior always lives where the model lives.

Three scale rules, one per constructor argument:

* ``scale``: one scalar scale for every weight and bias (the sweep knob);
* ``layer_scales``: a scale per layer name, ``scale`` for the rest;
* ``fan_in=True``: ``scale / sqrt(fan_in)`` with ``fan_in = C_in * k * k``
  for a convolution and ``in_features`` for a dense layer.

A new family is one small subclass that overrides :meth:`Prior.distribution` (and, for the app, a
``conf/prior/<name>.yaml`` naming it as ``_target_``)::

    class CauchyPrior(Prior):
        def distribution(self, loc, scale):
            return dist.Cauchy(loc, scale)
"""

from __future__ import annotations

import difflib
import inspect
import math
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

import pyro.distributions as dist
import torch
from pyro.nn import PyroSample
from torch import nn
from torch.distributions import Independent

from ..checks import ArgumentError, check_positive
from ..options import check_prior_options
from .layers import make_bayesian_layer

#: Layer types whose parameters become sample sites.
BAYESIAN_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def select_layers(network: nn.Module, bayesian: Union[str, Sequence[str], Callable[[str, nn.Module], bool]] = "all",
                  prefix: str = "") -> List[str]:
    """The names of the layers of ``network`` that become Bayesian (the others keep point estimates).

    :param bayesian: ``"all"`` (every Linear/Conv layer), ``"last"`` (the last ``nn.Linear``), a list of module
        names (each selects the Linear/Conv layers at or below it: ``["layer4", "fc"]``; ``prefix`` + name too,
        e.g. ``"net.4"``), or a predicate ``(name, module) -> bool`` over the Linear/Conv layers.
    """
    candidates = [name for name, m in network.named_modules() if isinstance(m, BAYESIAN_LAYERS)]
    if isinstance(bayesian, str) and bayesian in ("all", "last"):
        if bayesian == "all":
            return candidates
        linear = [name for name, m in network.named_modules() if isinstance(m, nn.Linear)]
        if not linear:
            raise ValueError("bayesian='last' makes the network's last nn.Linear layer Bayesian, and it has none: "
                             f"name the layers instead, bayesian=[...] of {candidates}")
        return linear[-1:]
    if callable(bayesian):
        try:
            inspect.signature(bayesian).bind("name", nn.Identity())
        except TypeError:
            raise ArgumentError("bayesian", f"a predicate {inspect.signature(bayesian)}",
                                fix="a predicate takes two arguments, (name, module) -> bool, e.g. "
                                    "lambda name, module: name.startswith('fc')") from None
        except ValueError:  # a builtin without a signature: called as it is
            pass
        chosen = [name for name in candidates if bayesian(name, network.get_submodule(name))]
    elif isinstance(bayesian, (list, tuple)) and bayesian and all(isinstance(b, str) for b in bayesian):
        modules = [name for name, _ in network.named_modules() if name]
        names = [b[len(prefix):] if prefix and b.startswith(prefix) else b for b in bayesian]
        unknown = [b for b, name in zip(bayesian, names) if name not in modules]
        if unknown:
            nearest = difflib.get_close_matches(unknown[0], [prefix + m for m in modules], n=1)
            hint = f" (did you mean {nearest[0]}?)" if nearest else ""
            raise ArgumentError("bayesian", list(bayesian), joiner=" names ",
                                fix=f"{unknown}, which are not modules of the network{hint}; its Linear/Conv layers are "
                                    f"{[prefix + c for c in candidates]}")
        chosen = [c for c in candidates if any(c == name or c.startswith(name + ".") for name in names)]
    else:
        raise ArgumentError("bayesian", bayesian,
                            fix="use 'all', 'last' (the last Linear layer), a list of module names (e.g. ['fc']; the "
                                "others are point estimates) or a predicate (name, module) -> bool")
    if not chosen:
        raise ArgumentError("bayesian", bayesian, joiner=" selects ",
                            fix=f"no Linear/Conv layer; the network's are {[prefix + c for c in candidates]}")
    return chosen


def _refuse_tied(network: nn.Module, names: Sequence[str], prefix: str) -> None:
    """Refuse layers that share a parameter (``dec.weight = enc.weight``): each would get a sample site of its own,
    two independent weights whose KL counts twice, where the network meant one."""
    owners: dict = {}
    for name in names:
        for param_name, param in network.get_submodule(name).named_parameters(recurse=False):
            first = owners.setdefault(id(param), f"{prefix}{name}.{param_name}")
            if first != f"{prefix}{name}.{param_name}":
                raise ValueError(f"{prefix}{name}.{param_name} is {first} (tied weights, one tensor): a Bayesian layer "
                                 "draws its own weights, so the two would become independent sites counted twice in "
                                 "the KL; untie them (a copy each), or leave one layer out of bayesian=")


def fan_in(layer: nn.Module) -> int:
    """Number of inputs feeding one output unit of ``layer`` (``C_in/groups * prod(k)`` for conv)."""
    if isinstance(layer, nn.Linear):
        return layer.in_features
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return layer.in_channels // layer.groups * math.prod(layer.kernel_size)
    raise TypeError(f"fan_in is defined for Linear and Conv layers, not {type(layer).__name__}")


class _PriorSite:
    """Callable given to :class:`PyroSample`: builds the prior of one parameter from the layer's buffers.

    The distribution is built again only when a buffer or the validation setting changed (building it
    is most of the cost of a weight site in a training step).
    """

    def __init__(self, prior: "Prior", param_name: str, shape: torch.Size):
        self.prior = prior
        self.param_name = param_name
        self.shape = shape
        self._built = ((None, None, None), None)

    def __call__(self, layer: nn.Module) -> dist.Distribution:
        loc = getattr(layer, f"{self.param_name}_prior_loc")
        scale = getattr(layer, f"{self.param_name}_prior_scale")
        key = (loc._version, scale._version, torch.distributions.Distribution._validate_args)
        (built_loc, built_scale, built_key), built = self._built
        if built_loc is not loc or built_scale is not scale or built_key != key:
            built = self.prior.distribution(loc, scale).expand(self.shape).to_event(len(self.shape))
            self._built = ((loc, scale, key), built)
        return built


class Prior:
    """Base class: a location-scale family and a rule giving each layer its scale.

    :param float scale: prior scale of every weight and bias (with ``fan_in=True``, the gain).
    :param float loc: prior location.
    :param dict layer_scales: optional ``{layer name: scale}`` overriding ``scale`` for those layers;
        names are the network's module names (e.g. ``"net.0"``), listed by :meth:`layer_names`.
    :param bool fan_in: divide the scale by ``sqrt(fan_in)`` of each layer.
    """


    def __init__(
        self,
        scale: float = 1.0,
        loc: float = 0.0,
        layer_scales: Optional[Mapping[str, float]] = None,
        fan_in: bool = False,
    ):
        check_prior_options(scale=scale, loc=loc, layer_scales=layer_scales, fan_in=fan_in)
        self.scale, self.loc, self.fan_in = float(scale), float(loc), fan_in
        self.layer_scales = {str(k): float(v) for k, v in (layer_scales or {}).items()}

    def distribution(self, loc: torch.Tensor, scale: torch.Tensor) -> dist.Distribution:
        """The family's distribution of one scalar weight, batched over ``loc``/``scale``."""
        raise NotImplementedError

    def layer_scale(self, layer_name: str, layer: nn.Module) -> float:
        """Prior scale of every parameter of ``layer``."""
        scale = self.layer_scales.get(layer_name, self.scale)
        return scale / math.sqrt(fan_in(layer)) if self.fan_in else scale

    @staticmethod
    def site_shapes(layer: nn.Module) -> dict:
        """``{parameter name: shape}`` of the sample sites this prior gave ``layer``."""
        return {name: site.shape for name, site in getattr(layer, "_pyro_samples", {}).items()
                if isinstance(site, _PriorSite)}

    @classmethod
    def layer_names(cls, network: nn.Module) -> list:
        """Names of the layers of ``network`` that received a prior (after :meth:`apply`)."""
        return [name for name, m in network.named_modules() if cls.site_shapes(m)]

    def apply(self, network: nn.Module, prefix: str = "", bayesian="all") -> nn.Module:
        """Replace every parameter of every Linear/Conv layer of ``network`` (those ``bayesian`` selects:
        :func:`select_layers`) by a sample site, and compute the layer's output through the estimator in effect
        (:class:`~pyro_bnn.model.layers.BayesianLayer`); the others stay parameters (point estimates).

        The network's modules must already be :class:`~pyro.nn.PyroModule` instances
        (see :func:`pyro.nn.module.to_pyro_module_`). Returns ``network``.
        """
        known = select_layers(network, bayesian, prefix)
        unknown = sorted(set(self.layer_scales) - {prefix + n for n in known})
        if unknown:
            raise ValueError(
                f"prior layer_scales names unknown layers {unknown}; "
                f"the layers are {[prefix + n for n in known]}"
            )
        _refuse_tied(network, known, prefix)
        for name in known:
            layer = network.get_submodule(name)
            scale = self.layer_scale(prefix + name, layer)
            for param_name, param in list(layer.named_parameters(recurse=False)):
                shape = param.shape
                loc, site_scale = self.site_loc_scale(f"{prefix}{name}.{param_name}", param, scale)
                delattr(layer, param_name)
                layer.register_buffer(f"{param_name}_prior_loc", loc)
                layer.register_buffer(f"{param_name}_prior_scale", site_scale)
                setattr(layer, param_name, PyroSample(_PriorSite(self, param_name, shape)))
            make_bayesian_layer(layer)
        return network

    def site_loc_scale(self, site: str, param: torch.Tensor, scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """The location and scale of the prior of ``site`` (a parameter like ``param``; ``scale``: its layer's
        scale): one number each here, shared by the site's weights (a tensor of ``param``'s shape for a prior
        centred weight by weight, :class:`MopedPrior`)."""
        return torch.tensor(self.loc), torch.tensor(scale)

    def __repr__(self) -> str:
        extra = f", layer_scales={self.layer_scales}" if self.layer_scales else ""
        return f"{type(self).__name__}(scale={self.scale}, loc={self.loc}, fan_in={self.fan_in}{extra})"


class NormalPrior(Prior):
    """Normal(loc, scale) on every weight and bias.

    :param bool learn_scale: empirical Bayes: during training, the prior scale of every site (each
        layer's weights and biases apart) is set to the value that maximises the ELBO given the guide
        (:mod:`pyro_bnn.objectives.empirical_bayes`); ``scale`` (with ``fan_in``, ``layer_scales``) is where it starts.
    :param float hyperprior_alpha: with ``learn_scale``, the shape ``alpha`` of an inverse-gamma hyperprior
        on each learned variance, ``InvGamma(alpha, (1 + alpha) s0^2)`` (mode at the configured scale ``s0``);
        0: none (the type-II maximum-likelihood scale).
    """


    def __init__(self, scale: float = 1.0, loc: float = 0.0, layer_scales=None, fan_in=False,
                 learn_scale: bool = False, hyperprior_alpha: float = 0.0):
        super().__init__(scale, loc, layer_scales, fan_in)
        check_prior_options(learn_scale=learn_scale, hyperprior_alpha=hyperprior_alpha)
        self.learn_scale = bool(learn_scale)
        self.hyperprior_alpha = float(hyperprior_alpha)

    def distribution(self, loc, scale):
        return dist.Normal(loc, scale)

    def __repr__(self) -> str:
        learned = f", learn_scale=True, hyperprior_alpha={self.hyperprior_alpha}" if self.learn_scale else ""
        return super().__repr__()[:-1] + learned + ")"


class LaplacePrior(Prior):
    """Laplace(loc, scale) on every weight and bias (sparsity-inducing)."""


    def distribution(self, loc, scale):
        return dist.Laplace(loc, scale)


class StudentTPrior(Prior):
    """Student-t(df, loc, scale) on every weight and bias (heavy tails).

    :param float df: degrees of freedom (> 0).
    """


    def __init__(self, scale: float = 1.0, loc: float = 0.0, layer_scales=None, fan_in=False, df: float = 3.0):
        super().__init__(scale, loc, layer_scales, fan_in)
        check_prior_options(df=df)
        self.df = float(df)

    def distribution(self, loc, scale):
        return dist.StudentT(torch.full_like(loc, self.df), loc, scale)


class MopedPrior(NormalPrior):
    """A Normal prior centred at trained weights: ``N(w, (delta |w|)^2)`` weight by weight (MOPED, Krishnan et al. 2020;
    bayesian-torch's empirical prior), for Bayesian fine-tuning of a trained network.

    :param weights: ``{site name: trained value}`` of every Bayesian site, e.g.
        :func:`~pyro_bnn.model.networks.pretrained_weights` of the trained network (site names of :func:`to_bayesian`).
    :param float delta: each weight's prior sd as a share of its size.
    :param float min_scale: the smallest prior sd (a weight at 0 would get a point mass).

    The prior differs from weight to weight, so the fused step does not apply: ``fit`` trains on Pyro's traces.
    Use it with the guide's means at the same weights (``auto_normal(model, init_loc=pretrained_weights(net,
    model=model))``).
    """


    def __init__(self, weights: Mapping[str, torch.Tensor], delta: float = 0.1, min_scale: float = 1e-3):
        super().__init__()
        self.delta, self.min_scale = check_positive(delta, "delta"), check_positive(min_scale, "min_scale")
        if not isinstance(weights, Mapping):
            raise ArgumentError("weights", type(weights).__name__, fix="pass a mapping {site: trained tensor}, "
                                "e.g. pretrained_weights(<the trained network>)")
        self.weights = {str(k): torch.as_tensor(v).detach().clone() for k, v in weights.items()}
        bad = [name for name, value in self.weights.items() if not bool(torch.isfinite(value).all())]
        if bad:
            raise ValueError(f"MopedPrior: the trained weights of {bad} hold NaN or inf values: a prior centred there "
                             "is no prior; pass the weights of a network that trained without diverging")

    def site_loc_scale(self, site, param, scale):
        if site not in self.weights:
            nearest = difflib.get_close_matches(site, list(self.weights), n=1)
            raise ValueError(f"MopedPrior has no trained weight for the site {site}"
                             + (f" (did you mean {nearest[0]}?)" if nearest else "")
                             + ": pass weights=pretrained_weights(<the trained network>)")
        trained = self.weights[site].to(dtype=param.dtype)
        if trained.shape != param.shape:
            raise ValueError(f"MopedPrior's trained weight for {site} has shape {tuple(trained.shape)}, the site "
                             f"{tuple(param.shape)}: pass the weights of the network being converted")
        return trained.clone(), (self.delta * trained.abs()).clamp_min(self.min_scale)

    def __repr__(self) -> str:
        return f"MopedPrior(delta={self.delta}, min_scale={self.min_scale}, {len(self.weights)} trained sites)"


def normal_params(fn) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """``(loc, scale)`` of a (possibly Independent) Normal distribution, else None."""
    while isinstance(fn, Independent):
        fn = fn.base_dist
    if isinstance(fn, dist.Normal):
        return fn.loc, fn.scale
    return None


def site_prior(model: nn.Module, name: str):
    """The prior distribution of the weight site ``name`` (e.g. ``net.0.weight``) of a PyroModule ``model``."""
    layer_name, _, attribute = name.rpartition(".")
    layer = model.get_submodule(layer_name)
    prior = layer._pyro_samples[attribute]
    return prior if hasattr(prior, "sample") else prior(layer)


__all__ = ["Prior", "NormalPrior", "LaplacePrior", "StudentTPrior", "MopedPrior"]
