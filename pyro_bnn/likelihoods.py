"""Observation models: the ``obs`` site of a Bayesian network, inside the data plate.

The plate has size ``num_data`` and is given the minibatch's indices as its
subsample, so Pyro scales the minibatch log-likelihood by ``num_data / B``: the
loss of one minibatch is an unbiased estimate of the whole data set's -ELBO.
The indices are a plain ``arange`` (no per-step ``randperm``): the DataLoader
already shuffles.
"""

from __future__ import annotations

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


class Gaussian(Likelihood):
    """Normal(mean, sigma) for outputs of shape ``(B, 1)``.

    :param float scale: initial (or fixed) noise standard deviation.
    :param bool learn_scale: learn ``sigma`` as a point estimate (type-II maximum likelihood);
        ``False`` keeps it fixed at ``scale`` (known noise).
    """

    task = "regression"

    def __init__(self, scale: float = 1.0, learn_scale: bool = True):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"likelihood scale={scale}: the noise scale must be > 0")
        if learn_scale:
            self.scale = PyroParam(torch.tensor(float(scale)), constraint=constraints.positive)
        else:
            self.register_buffer("scale", torch.tensor(float(scale)))

    def distribution(self, outputs):
        return dist.Normal(outputs.squeeze(-1), self.scale)


#: Likelihood classes by name, as used in configs.
LIKELIHOODS = {"categorical": Categorical, "gaussian": Gaussian}
