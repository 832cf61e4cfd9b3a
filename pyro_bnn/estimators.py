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

Use them around the computation of the loss; they act on every Linear/Conv1d/Conv2d/Conv3d
layer whose weight was drawn from a Normal (e.g. by
:func:`~pyro_bnn.guides.auto_normal`) and leave other layers alone::

    with LocalReparameterization():
        loss = elbo_terms(model, guide, x, y).loss     # or svi.step(x, y)

While a handler is active, the calls of ``torch.nn.functional.linear`` and ``conv1d/2d/3d`` made *in its
thread* are routed through it (other threads' calls, and other layers, e.g. ``ConvTranspose2d``, never
Bayesian: :data:`~pyro_bnn.priors.BAYESIAN_LAYERS`, are not): the handlers active in a thread form a stack
of that thread, and the four functions are swapped for dispatchers once, while any handler is active in any
thread, then put back. It records, for each Normal sample it sees (the guide's, seen
first), the ``(loc, scale)`` behind the sampled tensor, and recognises that tensor
when a layer uses it as its weight. A tensor the guide drew from another distribution
(the point of ``auto_delta``, a joint draw of ``auto_lowrank``) stays a plain weight when
the model's Normal prior sees it again: such guides train as with one shared draw. The
KL terms are untouched (closed form or at the sampled weights). ``fit(..., estimator=...)``
and ``inference.estimator`` select one; :class:`SharedDraw` (``"shared"``) is the handler that changes nothing.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from pyro.poutine.messenger import Messenger

from .priors import normal_params

#: The functions of ``torch.nn.functional`` a handler routes (those of :data:`~pyro_bnn.priors.BAYESIAN_LAYERS`).
ROUTED = ("linear", "conv1d", "conv2d", "conv3d")
#: torch's own functions, as they were when this module was imported.
_TORCH = {name: getattr(F, name) for name in ROUTED}


class _Routing(threading.local):
    """The handlers active in this thread (innermost last)."""

    def __init__(self):
        self.stack = []


_ROUTING = _Routing()
#: A draw and the Normal it came from: ``(value, loc, scale)`` (what :meth:`LayerNoise.register` records).
Normal = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]
_INSTALL_LOCK = threading.Lock()
_installed = 0  # handlers active over all threads: the dispatchers stand in for torch's functions while > 0


def _dispatcher(name: str):
    """``F.<name>`` through this thread's innermost active handler, or torch's own where none is active."""
    original = _TORCH[name]

    def dispatch(*args, **kwargs):
        stack = _ROUTING.stack
        return stack[-1].route(name, *args, **kwargs) if stack else original(*args, **kwargs)
    return dispatch


_DISPATCHERS = {name: _dispatcher(name) for name in ROUTED}


def _activate(handler) -> None:
    global _installed
    with _INSTALL_LOCK:
        if _installed == 0:
            for name in ROUTED:
                setattr(F, name, _DISPATCHERS[name])
        _installed += 1
    _ROUTING.stack.append(handler)


def _deactivate(handler) -> None:
    global _installed
    _ROUTING.stack.remove(handler)
    with _INSTALL_LOCK:
        _installed -= 1
        if _installed == 0:
            for name in ROUTED:
                setattr(F, name, _TORCH[name])


class SharedDraw:
    """The estimator ``"shared"``: one weight draw per minibatch, every layer computed as it is. The handler that
    changes nothing, with the interface of the others (``with``, :meth:`register`, :meth:`routing`,
    :meth:`for_rows`)."""

    needs_weight_draw = True
    #: whether the layers' computation reads the Normal behind each drawn weight (given to :meth:`register`)
    reads_normals = False
    #: what ``linear`` and ``conv`` layers get where it is not this estimator's own (:func:`layer_estimator`)
    per_layer: Dict[str, str] = {}

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None

    def register(self, value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> None:
        """Nothing to record: the layers use the drawn tensors as they are."""

    def routing(self, rows: Optional[Tuple[int, int]] = None) -> "SharedDraw":
        """Active over (a part ``rows`` of) a minibatch: nothing per example to draw here (a context manager: itself)."""
        return self

    for_rows = routing

    def dense(self, x: torch.Tensor, weight: Normal, bias: Normal, rows: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """A Linear layer on the drawn weights: ``F.linear(x, weight[0], bias[0])``."""
        return _TORCH["linear"](x, weight[0], bias[0])


class LayerNoise(Messenger):
    """Records the Normal behind every sampled tensor; routes ``F.linear`` to :meth:`linear` and
    ``F.conv1d/2d/3d`` to :meth:`conv`."""

    #: what ``linear`` and ``conv`` layers get where it is not this estimator's own (:func:`layer_estimator`)
    per_layer: Dict[str, str] = {}
    #: whether the layers' computation reads the Normal behind each drawn weight (given to :meth:`register`)
    reads_normals = True

    def __init__(self):
        super().__init__()
        self._normals: Dict[int, Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]] = {}
        self._rows: Optional[Tuple[int, int]] = None
        self._routing = None  # the routing of a plain ``with handler:`` block (:meth:`__enter__`)

    @contextmanager
    def routing(self, rows: Optional[Tuple[int, int]] = None) -> Iterator["LayerNoise"]:
        """Route this thread's layers through the handler, without joining Pyro's effect stack: the tensors it knows
        are those given to :meth:`register` (what :class:`~pyro_bnn.fused.FusedMeanField` does).

        :param rows: ``(first row, rows of the whole minibatch)`` of the part of a minibatch this process holds
            (:func:`~pyro_bnn.inference.fit` with ``distributed=True``; None: the whole minibatch): the per-example
            noise is drawn for the whole minibatch and this part's rows are kept, so every process draws what one
            process would draw.
        """
        self._normals.clear()
        self._rows = rows
        _activate(self)
        try:
            yield self
        finally:
            _deactivate(self)
            self._normals.clear()
            self._rows = None

    @contextmanager
    def for_rows(self, rows: Optional[Tuple[int, int]]) -> Iterator["LayerNoise"]:
        """:meth:`routing`, and on Pyro's effect stack: every Normal the guide samples is registered."""
        with self.routing(rows), self:
            yield self

    def _per_example(self, draw, shape) -> torch.Tensor:
        """``draw(shape)`` whose first dimension is the examples, or this process's rows of the whole batch's."""
        if self._rows is None:
            return draw(shape)
        start, total = self._rows
        return draw((total, *shape[1:]))[start:start + shape[0]]

    def __enter__(self):
        if self not in _ROUTING.stack:  # ``with handler:`` alone: route too, for the whole block
            self._routing = self.routing(self._rows)
            self._routing.__enter__()
        return super().__enter__()

    def __exit__(self, *args):
        routing, self._routing = self._routing, None
        try:
            return super().__exit__(*args)
        finally:
            if routing is not None:
                routing.__exit__(None, None, None)

    def dense(self, x: torch.Tensor, weight: Normal, bias: Normal, rows: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """A Linear layer whose weight and bias are the draws ``weight[0]``, ``bias[0]`` of the Normals
        ``(loc, scale) = weight[1:]``, ``bias[1:]``, computed by this estimator without routing ``F.linear``: what
        :meth:`route` does for a registered layer, with its arguments known (:class:`~pyro_bnn.fused.SequentialPlan`).
        ``rows``: as in :meth:`routing`."""
        self._rows = rows
        try:
            return self.linear(x, weight, bias[0], bias if bias[1] is not None else None)
        finally:
            self._rows = None

    def route(self, name: str, *args, **kwargs) -> torch.Tensor:
        """``F.<name>(*args, **kwargs)`` of a layer in this handler's thread."""
        return self._linear(*args, **kwargs) if name == "linear" else self._conv(_TORCH[name], *args, **kwargs)

    def register(self, value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> None:
        """Treat ``value`` as a draw from ``Normal(loc, scale)`` when a layer uses it (inside the handler)."""
        self._normals[id(value)] = (value, loc, scale)  # keeps value alive, so its id stays unique

    def _pyro_post_sample(self, msg):
        value = msg["value"]
        if msg["is_observed"] or not isinstance(value, torch.Tensor) or id(value) in self._normals:
            return
        params = normal_params(msg["fn"])
        if params is not None and params[0].shape == value.shape:
            self.register(value, *params)
        else:  # not a Normal draw (e.g. the point of auto_delta, a joint draw of auto_lowrank): the model's replay
            self._normals[id(value)] = (value, None, None)  # of it under its Normal prior is no Normal draw either

    def _normal_of(self, tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        found = self._normals.get(id(tensor)) if tensor is not None else None
        return found if found is not None and found[0] is tensor and found[1] is not None else None

    def _linear(self, input, weight, bias=None):
        normal = self._normal_of(weight)
        if normal is None:
            return _TORCH["linear"](input, weight, bias)
        return self.linear(input, normal, bias, self._normal_of(bias))

    def _conv(self, original, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        """``original`` (``F.conv1d``, ``conv2d`` or ``conv3d``) through :meth:`conv` where its weight is a Normal draw."""
        normal = self._normal_of(weight)
        if normal is None:
            return original(input, weight, bias, stride, padding, dilation, groups)
        conv = lambda x, w, b=None: original(x, w, b, stride, padding, dilation, groups)  # noqa: E731
        return self.conv(conv, input, normal, bias, self._normal_of(bias))


class LocalReparameterization(LayerNoise):
    """Draw each example's pre-activations from their marginal Normal (see the module docstring)."""

    #: whether a layer's computation reads the drawn weights (here only their means and scales)
    needs_weight_draw = False

    def _draw(self, mean, variance):
        noise = self._per_example(lambda shape: torch.randn(shape, dtype=mean.dtype, device=mean.device), mean.shape)
        return mean + variance.clamp_min(1e-30).sqrt() * noise

    def linear(self, x, weight_normal, bias, bias_normal):
        _, loc, scale = weight_normal
        linear = _TORCH["linear"]
        mean = linear(x, loc, bias_normal[1] if bias_normal else bias)
        variance = linear(x * x, scale * scale, bias_normal[2] ** 2 if bias_normal else None)
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

    def conv(self, conv, x, weight_normal, bias, bias_normal):
        return conv(x, weight_normal[0], bias)


class Flipout(LayerNoise):
    """Decorrelate the shared weight draw across examples with random sign flips (see the module docstring)."""

    needs_weight_draw = True

    def _signs(self, batch: int, size: int, like: torch.Tensor) -> torch.Tensor:
        draw = lambda shape: torch.randint(0, 2, shape, device=like.device)  # noqa: E731
        return self._per_example(draw, (batch, size)).to(like.dtype) * 2 - 1

    def linear(self, x, weight_normal, bias, bias_normal):
        weight, loc, _ = weight_normal
        linear = _TORCH["linear"]
        flat = x.reshape(-1, x.shape[-1])
        r, s = self._signs(len(flat), loc.shape[1], x), self._signs(len(flat), loc.shape[0], x)
        out = linear(flat, loc, bias_normal[1] if bias_normal else bias)
        perturbation = linear(flat * r, weight - loc, bias - bias_normal[1] if bias_normal else None)
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


def layer_estimator(name: str, layer: torch.nn.Module) -> str:
    """The estimator a Bayesian ``layer`` gets under estimator ``name`` (a handler's ``per_layer``: e.g. the dense
    variant leaves convolutions to the shared draw)."""
    return HANDLERS[name].per_layer.get("linear" if isinstance(layer, torch.nn.Linear) else "conv", name)


def estimator_handler(name: str):
    """A fresh handler for estimator ``name`` (one of :data:`ESTIMATORS`)."""
    if name not in HANDLERS:
        raise ValueError(f"estimator={name!r} is not known; choose one of {list(ESTIMATORS)}")
    return HANDLERS[name]()
