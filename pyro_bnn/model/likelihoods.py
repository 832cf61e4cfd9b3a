"""Observation models: the ``obs`` site of a Bayesian network, inside the data plate.

The plate has size ``num_data`` and is given the minibatch's indices as its
subsample, so Pyro scales the minibatch log-likelihood by ``num_data / B``: the
loss of one minibatch is an unbiased estimate of the whole data set's -ELBO.
The indices are a plain ``arange`` (no per-step ``randperm``): the DataLoader
already shuffles.
"""

from __future__ import annotations

import math
from typing import Optional

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from torch.distributions import constraints


class Likelihood(PyroModule):
    """Base class. Subclasses give :meth:`distribution` of one observation from the network output."""

    #: ``"classification"`` or ``"regression"``
    task = ""

    def distribution(self, outputs: torch.Tensor) -> dist.Distribution:
        raise NotImplementedError

    def output_size(self, num_targets: int) -> int:
        """Network outputs per example this likelihood reads for ``num_targets`` targets (classes, or 1)."""
        return num_targets

    def check_num_outputs(self, num_outputs: int) -> None:
        """Refuse a network of ``num_outputs`` outputs this likelihood cannot read."""

    def forward(self, outputs: torch.Tensor, y: Optional[torch.Tensor], num_data: int) -> torch.Tensor:
        batch = outputs.shape[0]
        indices = torch.arange(batch, device=outputs.device)
        with pyro.plate("data", size=num_data, subsample=indices):
            return pyro.sample("obs", self.distribution(outputs), obs=y)

    def log_likelihood(self, outputs: torch.Tensor, y: torch.Tensor, num_data: int) -> torch.Tensor:
        """The ``obs`` site's log-density as the plate scales it: ``(num_data / B) * sum_n log p(y_n | outputs_n)``."""
        return self.distribution(outputs).log_prob(y).sum() * (num_data / outputs.shape[0])


class Categorical(Likelihood):
    """Categorical over classes from logits of shape ``(B, C)``."""

    task = "classification"

    def distribution(self, outputs):
        return dist.Categorical(logits=outputs)

    def check_num_outputs(self, num_outputs: int) -> None:
        if num_outputs < 2:
            raise ValueError(f"a Categorical likelihood needs a logit per class (>= 2 outputs), the network has "
                             f"{num_outputs}: build it with num_outputs=<number of classes>")


class Regression(Likelihood):
    """Base class of the Normal observation models: :meth:`loc_scale` gives each example's mean and noise sd."""

    task = "regression"
    #: network outputs per example
    width = 1

    def loc_scale(self, outputs: torch.Tensor):
        """``(mean, sd)`` of the observation given network outputs ``(..., B, width)``: each of shape ``(..., B)``
        (the sd may be a scalar)."""
        raise NotImplementedError

    def distribution(self, outputs):
        loc, scale = self.loc_scale(outputs)
        return dist.Normal(loc, scale)

    def output_size(self, num_targets: int) -> int:
        return self.width * num_targets

    def check_num_outputs(self, num_outputs: int) -> None:
        if num_outputs != self.width:
            raise ValueError(f"{type(self).__name__} reads {self.width} network output(s) per example, the network "
                             f"has {num_outputs}: build it with num_outputs={self.width} (one regression target)")


class Gaussian(Regression):
    """Normal(mean, sigma) for outputs of shape ``(B, 1)``: one noise sd for every example (homoscedastic).

    :param float scale: initial (or fixed) noise standard deviation.
    :param bool learn_scale: learn ``sigma`` as a point estimate (type-II maximum likelihood);
        ``False`` keeps it fixed at ``scale`` (known noise).
    """

    def __init__(self, scale: float = 1.0, learn_scale: bool = True):
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale={scale}: use a finite number > 0 (the Gaussian likelihood's noise sd)")
        if learn_scale:
            self.scale = PyroParam(torch.tensor(float(scale)), constraint=constraints.positive)
        else:
            self.register_buffer("scale", torch.tensor(float(scale)))

    def loc_scale(self, outputs):
        return outputs.squeeze(-1), self.scale


class HeteroscedasticGaussian(Regression):
    """Normal(mean_n, sigma_n) with both from the network, outputs of shape ``(B, 2)``: the first is the mean, the
    second gives the noise sd ``sigma_n = min_scale + softplus(output)`` (positive, never below the floor), so the
    noise may differ from example to example (Lakshminarayanan et al. 2017; Wu et al. 2019).

    :param float min_scale: the floor of the noise sd (in the units of the targets; > 0).
    """

    width = 2

    def __init__(self, min_scale: float = 1e-3):
        super().__init__()
        if not (isinstance(min_scale, (int, float)) and math.isfinite(min_scale) and min_scale > 0):
            raise ValueError(f"min_scale={min_scale}: use a finite number > 0 (the heteroscedastic likelihood's smallest "
                             "noise sd)")
        self.min_scale = float(min_scale)

    def loc_scale(self, outputs):
        return outputs[..., 0], self.min_scale + torch.nn.functional.softplus(outputs[..., 1])


#: Regression likelihoods by config name (``model.likelihood``).
REGRESSION_LIKELIHOODS = {"gaussian": Gaussian, "heteroscedastic": HeteroscedasticGaussian}


__all__ = ["Categorical", "Gaussian", "HeteroscedasticGaussian"]
