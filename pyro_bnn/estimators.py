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

While a handler is active, ``torch.nn.functional.linear`` and ``conv1d/2d/3d`` are
routed through it (other layers, e.g. ``ConvTranspose2d``, are never Bayesian:
:data:`~pyro_bnn.priors.BAYESIAN_LAYERS`); it records, for each Normal sample it sees (the guide's, seen
first), the ``(loc, scale)`` behind the sampled tensor, and recognises that tensor
when a layer uses it as its weight. A tensor the guide drew from another distribution
(the point of ``auto_delta``, a joint draw of ``auto_lowrank``) stays a plain weight when
the model's Normal prior sees it again: such guides train as with one shared draw. The
KL terms are untouched (closed form or at the sampled weights). ``fit(..., estimator=...)``
and ``inference.estimator`` select one.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from pyro.distributions import Normal
from pyro.poutine.messenger import Messenger
from torch.distributions import Independent

#: The functions of ``torch.nn.functional`` a handler routes (those of :data:`~pyro_bnn.priors.BAYESIAN_LAYERS`).
ROUTED = ("linear", "conv1d", "conv2d", "conv3d")
ESTIMATORS = ("shared", "local_reparameterization", "dense_local_reparameterization", "flipout")


def normal_params(fn) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """``(loc, scale)`` of a (possibly Independent) Normal distribution, else None."""
    while isinstance(fn, Independent):
        fn = fn.base_dist
    if isinstance(fn, Normal):
        return fn.loc, fn.scale
    return None


class LayerNoise(Messenger):
    """Records the Normal behind every sampled tensor; routes ``F.linear`` to :meth:`linear` and
    ``F.conv1d/2d/3d`` to :meth:`conv`."""

    def __init__(self):
        super().__init__()
        self._normals: Dict[int, Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]] = {}
        self._originals = None
        #: ``(first row, rows of the whole minibatch)`` when this process holds a part of the minibatch
        #: (:func:`~pyro_bnn.inference.fit` with ``distributed=True``): the per-example noise is drawn for the
        #: whole minibatch and this part's rows are kept, so every process draws what one process would draw
        self.rows: Optional[Tuple[int, int]] = None

    def _per_example(self, draw, shape) -> torch.Tensor:
        """``draw(shape)`` whose first dimension is the examples, or this process's rows of the whole batch's."""
        if self.rows is None:
            return draw(shape)
        start, total = self.rows
        return draw((total, *shape[1:]))[start:start + shape[0]]

    def __enter__(self):
        self._normals.clear()
        self._originals = {name: getattr(F, name) for name in ROUTED}
        for name in ROUTED:
            setattr(F, name, self._linear if name == "linear" else self._routed_conv(self._originals[name]))
        return super().__enter__()

    def __exit__(self, *args):
        for name, original in self._originals.items():
            setattr(F, name, original)
        self._normals.clear()
        return super().__exit__(*args)

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
            return self._originals["linear"](input, weight, bias)
        return self.linear(input, normal, bias, self._normal_of(bias))

    def _routed_conv(self, original):
        """``original`` (``F.conv1d``, ``conv2d`` or ``conv3d``) through :meth:`conv` where its weight is a Normal draw."""
        def routed(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
            normal = self._normal_of(weight)
            if normal is None:
                return original(input, weight, bias, stride, padding, dilation, groups)
            conv = lambda x, w, b=None: original(x, w, b, stride, padding, dilation, groups)  # noqa: E731
            return self.conv(conv, input, normal, bias, self._normal_of(bias))
        return routed


class LocalReparameterization(LayerNoise):
    """Draw each example's pre-activations from their marginal Normal (see the module docstring)."""

    #: whether a layer's computation reads the drawn weights (here only their means and scales)
    needs_weight_draw = False

    def _draw(self, mean, variance):
        noise = self._per_example(lambda shape: torch.randn(shape, dtype=mean.dtype, device=mean.device), mean.shape)
        return mean + variance.clamp_min(1e-30).sqrt() * noise

    def linear(self, x, weight_normal, bias, bias_normal):
        _, loc, scale = weight_normal
        linear = self._originals["linear"]
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
        linear = self._originals["linear"]
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


#: The handler of each estimator name (``shared``: none, one weight draw per minibatch).
HANDLERS = {"shared": None, "local_reparameterization": LocalReparameterization,
            "dense_local_reparameterization": DenseLocalReparameterization, "flipout": Flipout}


def layer_estimator(name: str, layer: torch.nn.Module) -> str:
    """The estimator a Bayesian ``layer`` gets under estimator ``name`` (the dense variant leaves convolutions to
    the shared draw)."""
    if name == "dense_local_reparameterization":
        return "local_reparameterization" if isinstance(layer, torch.nn.Linear) else "shared"
    return name


def estimator_handler(name: str) -> Optional[LayerNoise]:
    """A fresh handler for estimator ``name`` (one of :data:`ESTIMATORS`), or None for ``shared``."""
    if name not in HANDLERS:
        raise ValueError(f"estimator={name!r} is not known; choose one of {list(ESTIMATORS)}")
    return HANDLERS[name]() if HANDLERS[name] is not None else None
