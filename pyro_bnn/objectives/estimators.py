"""Gradient estimators for Linear and Conv1d/2d/3d layers with Normal weights, as Pyro effect handlers.

By default a minibatch shares one draw of the weights (``shared``). Three handlers
lower the variance of the gradient; all but the convolution approximation of the first leave
what it estimates unchanged:

* :class:`LocalReparameterization` (Kingma, Salimans & Welling 2015): for a layer
  ``x -> x W^T + b`` with independent ``W ~ N(M, S^2)``, ``b ~ N(m, s^2)``, each
  example's pre-activations are drawn from their exact marginal
  ``N(x M^T + m, x^2 (S^2)^T + s^2)``: independent noise per example at the cost
  of one extra matmul. For convolutions the output positions of one example are drawn
  independently too (they share weights, so this is the usual approximation).
  :class:`DenseLocalReparameterization` does this for Linear layers only and keeps the
  shared draw in convolutions: exact in distribution, and one convolution per layer.
* :class:`Flipout` (Wen et al. 2018): the shared draw ``W = M + dW``, ``b = m + db`` is
  decorrelated across examples with random signs, ``x M^T + m + ((x * r) dW^T + db) * s``,
  ``r, s`` in ``{-1, 1}`` per example; exact in distribution for every example, Linear and
  convolutions alike.

Use them around the computation of the loss; they act on the Bayesian layers of a pyro_bnn model
(:class:`~pyro_bnn.model.layers.BayesianLayer`: what a prior's ``apply`` makes of a Linear/Conv1d/Conv2d/Conv3d layer) whose
weight was drawn from a Normal (e.g. by :func:`~pyro_bnn.guides.auto_normal`), and leave other layers alone::

    with LocalReparameterization():
        loss = elbo_terms(model, guide, x, y).loss     # or svi.step(x, y)

A handler is a Pyro :class:`~pyro.poutine.messenger.Messenger`. It records, for each Normal sample site the guide
draws (seen first), the ``(value, loc, scale)`` behind it, by the site's name; a Bayesian layer sends its output as a
message of its own type (:func:`~pyro_bnn.model.layers.layer_output`), and the handler computes it from the Normals of the
layer's sites where the layer's weight is the value it recorded. Nothing in torch is replaced. A tensor the guide drew
from another distribution (the point of ``auto_delta``, a joint draw of ``auto_lowrank``) stays a plain weight: such
guides train as with one shared draw. A layer called twice in one forward pass would get independent noise in each
call (another model than the one written): the handler refuses it in one line. The KL terms are untouched (closed
form or at the sampled weights). ``fit(..., estimator=...)`` and ``inference.estimator`` select one;
:class:`SharedDraw` (``"shared"``) is the handler that changes nothing.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Set, Tuple

import torch
import torch.nn.functional as F
from pyro.poutine.messenger import Messenger
from torch import nn

from ..checks import ArgumentError
from ..model.layers import own_output
from ..model.networks import BayesianModel, layer_type
from ..model.priors import normal_params

#: A draw and the Normal it came from: ``(value, loc, scale)`` (what :meth:`LayerNoise.register` records).
Normal = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def layer_kind(layer: nn.Module) -> str:
    """``"linear"`` or ``"conv"``: the key of a handler's ``per_layer`` and of the computation a layer gets."""
    return "linear" if isinstance(layer, nn.Linear) else "conv"


class SharedDraw:
    """The estimator ``"shared"``: one weight draw per minibatch, every layer computed as it is. The handler that
    changes nothing, with the interface of the others (``with``, :meth:`register`, :meth:`for_rows`, :meth:`dense`)."""

    needs_weight_draw = True
    #: whether the layers' computation reads the Normal behind each drawn weight (given to :meth:`register`)
    reads_normals = False
    #: what ``linear`` and ``conv`` layers get where it is not this estimator's own (:func:`layer_estimator`)
    per_layer: Dict[str, str] = {}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None

    def register(self, site: str, value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> None:
        """Nothing to record: the layers use the drawn tensors as they are."""

    def for_rows(self, rows: Optional[Tuple[int, int]] = None) -> "SharedDraw":
        """Active over (a part ``rows`` of) a minibatch: nothing per example to draw here (a context manager: itself)."""
        return self

    def dense(self, x: torch.Tensor, weight: Normal, bias: Normal, rows: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """A Linear layer on the drawn weights: ``F.linear(x, weight[0], bias[0])``."""
        return F.linear(x, weight[0], bias[0])


class LayerNoise(Messenger):
    """Records the Normal behind every sampled site by name; computes a Bayesian layer's output (the message
    ``"bayesian_layer"``) by :meth:`linear` or :meth:`conv` where its weight is a recorded Normal draw."""

    #: what ``linear`` and ``conv`` layers get where it is not this estimator's own (:func:`layer_estimator`)
    per_layer: Dict[str, str] = {}
    #: whether the layers' computation reads the Normal behind each drawn weight (given to :meth:`register`)
    reads_normals = True

    def __init__(self):
        super().__init__()
        self._normals: Dict[str, Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]] = {}
        self._computed: Set[str] = set()  # the layers computed since their weights were drawn
        self._rows: Optional[Tuple[int, int]] = None

    @contextmanager
    def for_rows(self, rows: Optional[Tuple[int, int]]) -> Iterator["LayerNoise"]:
        """The handler over one minibatch, or over the part ``rows`` of it that this process holds.

        :param rows: ``(first row, rows of the whole minibatch)`` (:func:`~pyro_bnn.training.loop.fit` with
            ``distributed=True``; None: the whole minibatch): the per-example noise is drawn for the whole minibatch
            and this part's rows are kept, so every process draws what one process would draw.
        """
        self._rows = rows
        try:
            with self:
                yield self
        finally:
            self._rows = None

    def __enter__(self):
        self._normals.clear()
        self._computed.clear()
        return super().__enter__()

    def __exit__(self, *args):
        try:
            return super().__exit__(*args)
        finally:
            self._normals.clear()
            self._computed.clear()

    def _per_example(self, draw, shape) -> torch.Tensor:
        """``draw(shape)`` whose first dimension is the examples, or this process's rows of the whole batch's."""
        if self._rows is None:
            return draw(shape)
        start, total = self._rows
        return draw((total, *shape[1:]))[start:start + shape[0]]

    def dense(self, x: torch.Tensor, weight: Normal, bias: Normal, rows: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """A Linear layer whose weight and bias are the draws ``weight[0]``, ``bias[0]`` of the Normals
        ``(loc, scale) = weight[1:]``, ``bias[1:]``: what the handler computes for a Bayesian Linear layer, with its
        Normals given (:class:`~pyro_bnn.objectives.fused.SequentialPlan`). ``rows``: as in :meth:`for_rows`."""
        self._rows = rows
        try:
            return self.linear(x, weight, bias[0], bias if bias[1] is not None else None)
        finally:
            self._rows = None

    def register(self, site: str, value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> None:
        """Treat ``value`` as the draw of sample site ``site`` from ``Normal(loc, scale)`` when its layer uses it."""
        self._normals[site] = (value, loc, scale)
        self._computed.discard(site.rpartition(".")[0])

    def _pyro_post_sample(self, msg):
        value, name = msg["value"], msg["name"]
        if msg["is_observed"] or not isinstance(value, torch.Tensor) or name in self._normals:
            return  # the guide's draw is seen first; the model's replay of it is the same tensor
        params = normal_params(msg["fn"])
        if params is not None and params[0].shape == value.shape:
            self.register(name, value, *params)
        else:  # not a Normal draw (e.g. the point of auto_delta, a joint draw of auto_lowrank): the model's replay
            self._normals[name] = (value, None, None)  # of it under its Normal prior is no Normal draw either

    def _normal_of(self, site: str, tensor) -> Optional[Normal]:
        found = self._normals.get(site) if tensor is not None else None
        return found if found is not None and found[0] is tensor and found[1] is not None else None

    def _pyro_bayesian_layer(self, msg):
        layer, x, weight, bias = msg["args"]
        name = msg["name"]
        kind = layer_kind(layer)
        normal = self._normal_of(f"{name}.weight", weight)
        if normal is None or self.per_layer.get(kind) == "shared":
            return  # the layer's own output (own_output)
        if name in self._computed:
            raise ValueError(f"the Bayesian layer {name} is called twice in one forward pass: under "
                             f"estimator={ESTIMATOR_NAMES[type(self)]} each call would draw its own per-example noise, "
                             "which is another model than the network's; use estimator=shared for this network")
        self._computed.add(name)
        bias_normal = self._normal_of(f"{name}.bias", bias)
        if kind == "linear":
            msg["value"] = self.linear(x, normal, bias, bias_normal)
        else:
            conv = lambda x, w, b=None: own_output(layer, x, w, b)  # noqa: E731
            msg["value"] = self.conv(conv, x, normal, bias, bias_normal)


class LocalReparameterization(LayerNoise):
    """Draw each example's pre-activations from their marginal Normal (see the module docstring)."""

    #: whether a layer's computation reads the drawn weights (here only their means and scales)
    needs_weight_draw = False

    def _draw(self, mean, variance):
        noise = self._per_example(lambda shape: torch.randn(shape, dtype=mean.dtype, device=mean.device), mean.shape)
        return mean + variance.clamp_min(1e-30).sqrt() * noise

    def linear(self, x, weight_normal, bias, bias_normal):
        _, loc, scale = weight_normal
        mean = F.linear(x, loc, bias_normal[1] if bias_normal else bias)
        variance = F.linear(x * x, scale * scale, bias_normal[2] ** 2 if bias_normal else None)
        return self._draw(mean, variance)

    def conv(self, conv, x, weight_normal, bias, bias_normal):
        _, loc, scale = weight_normal
        mean = conv(x, loc, bias_normal[1] if bias_normal else bias)
        variance = conv(x * x, scale * scale, bias_normal[2] ** 2 if bias_normal else None)
        return self._draw(mean, variance)


class DenseLocalReparameterization(LocalReparameterization):
    """Local reparameterization for Linear layers; convolutions keep the minibatch's shared weight draw.

    Exact in distribution for every example, unlike the per-position draws of :class:`LocalReparameterization`
    for convolutions (the output positions of a conv share its weights), and cheaper: one convolution per layer."""

    needs_weight_draw = True
    per_layer = {"linear": "local_reparameterization", "conv": "shared"}


class Flipout(LayerNoise):
    """Decorrelate the shared weight draw across examples with random sign flips (see the module docstring)."""

    needs_weight_draw = True

    def _signs(self, batch: int, size: int, like: torch.Tensor) -> torch.Tensor:
        draw = lambda shape: torch.randint(0, 2, shape, device=like.device)  # noqa: E731
        return self._per_example(draw, (batch, size)).to(like.dtype) * 2 - 1

    def linear(self, x, weight_normal, bias, bias_normal):
        weight, loc, _ = weight_normal
        flat = x.reshape(-1, x.shape[-1])
        r, s = self._signs(len(flat), loc.shape[1], x), self._signs(len(flat), loc.shape[0], x)
        out = F.linear(flat, loc, bias_normal[1] if bias_normal else bias)
        perturbation = F.linear(flat * r, weight - loc, bias - bias_normal[1] if bias_normal else None)
        return (out + perturbation * s).reshape(*x.shape[:-1], loc.shape[0])

    def conv(self, conv, x, weight_normal, bias, bias_normal):
        weight, loc, _ = weight_normal
        positions = (1,) * (x.dim() - 2)  # the signs of one example and channel are shared by its positions
        r = self._signs(len(x), x.shape[1], x).view(len(x), -1, *positions)
        s = self._signs(len(x), loc.shape[0], x).view(len(x), -1, *positions)
        out = conv(x, loc, bias_normal[1] if bias_normal else bias)
        return out + conv(x * r, weight - loc, bias - bias_normal[1] if bias_normal else None) * s


#: The handler of each estimator name: the one list of estimators (``fit(estimator=...)``, ``inference.estimator``).
HANDLERS = {"shared": SharedDraw, "local_reparameterization": LocalReparameterization,
            "dense_local_reparameterization": DenseLocalReparameterization, "flipout": Flipout}
ESTIMATORS = tuple(HANDLERS)
ESTIMATOR_NAMES = {handler: name for name, handler in HANDLERS.items()}


def layer_estimator(name: str, layer: torch.nn.Module) -> str:
    """The estimator a Bayesian ``layer`` gets under estimator ``name`` (a handler's ``per_layer``: e.g. the dense
    variant leaves convolutions to the shared draw)."""
    return HANDLERS[name].per_layer.get(layer_kind(layer), name)


def describe_layers(model: BayesianModel, estimator: str = "shared") -> str:
    """One line: each Bayesian layer of ``model`` with the gradient estimator it gets under ``estimator``, then the
    point-estimate layers."""
    bayesian = [f"{name} {layer_type(layer)} ({layer_estimator(estimator, layer)})" for name, layer in model.bayesian_layers()]
    points = [f"{name} {kind}" for name, kind in model.point_estimate_layers()]
    count = model.num_point_estimates()
    return (f"Bayesian layers: {', '.join(bayesian)}; point estimates: {', '.join(points) or 'none'}"
            + (f" ({count} numbers)" if count else ""))


def estimator_handler(name: str):
    """A fresh handler for estimator ``name`` (one of :data:`ESTIMATORS`)."""
    if name not in HANDLERS:
        raise ArgumentError("estimator", name, joiner=" is ", fix=f"not known; choose one of {list(ESTIMATORS)}")
    return HANDLERS[name]()


__all__ = ["ESTIMATORS", "estimator_handler", "SharedDraw", "LocalReparameterization",
           "DenseLocalReparameterization", "Flipout", "describe_layers"]
