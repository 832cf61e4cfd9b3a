"""Bayesian Linear/Conv layers: their output computed by the estimator in effect, through a message of their own.

:meth:`Prior.apply <pyro_bnn.model.priors.Prior.apply>` turns each layer it makes Bayesian into a :class:`BayesianLayer`
(the same class, with this mixin first): its forward draws its weight and bias (the sample sites) and hands them to
:func:`layer_output`, an effectful operation of Pyro's message type ``"bayesian_layer"``. Without a handler of that
type the layer computes what its class computes (``F.linear``, or the class's convolution); an estimator of
:mod:`pyro_bnn.objectives.estimators` is a :class:`~pyro.poutine.messenger.Messenger` that handles the message and computes the
output its own way (per-example noise from the Normal behind the weight). Nothing in torch is replaced, and a layer
is known by its name (``net.0``), not by the identity of a tensor.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from pyro.poutine.runtime import effectful
from torch import nn

#: Pyro's message type of a Bayesian layer's output (what an estimator handles: ``_pyro_bayesian_layer``).
MESSAGE = "bayesian_layer"


def own_output(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """What ``layer``'s class computes on ``x`` with these ``weight`` and ``bias``: ``F.linear``, or the convolution of
    a Conv1d/2d/3d (its stride, padding, padding mode, dilation and groups)."""
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight, bias)
    return layer._conv_forward(x, weight, bias)


#: ``layer_output(layer, x, weight, bias, name=<layer name>)``: :func:`own_output`, or an estimator's output.
layer_output = effectful(own_output, type=MESSAGE)


class BayesianLayer:
    """Mixin of a Linear/Conv1d/2d/3d PyroModule whose weight and bias are sample sites: the output is
    :func:`layer_output`'s (the estimator's where one handles it)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias  # the sample sites, in the order the class's own forward draws them
        return layer_output(self, input, weight, bias, name=self._pyro_name)


_CLASSES: Dict[type, type] = {}


def make_bayesian_layer(layer: nn.Module) -> None:
    """Give ``layer`` (a Linear/Conv PyroModule) the :class:`BayesianLayer` forward; its class keeps its name."""
    if isinstance(layer, BayesianLayer):
        return
    cls = type(layer)
    if cls not in _CLASSES:
        _CLASSES[cls] = type(cls.__name__, (BayesianLayer, cls), {"__module__": cls.__module__})
    layer.__class__ = _CLASSES[cls]
