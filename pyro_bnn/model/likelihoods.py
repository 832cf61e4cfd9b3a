"""Observation models: the ``obs`` site of a Bayesian network, inside the data plate, and what depends on it: the
task, the metrics that score the predictive (:mod:`pyro_bnn.metrics`) and their units.

The plate has size ``num_data`` and is given the minibatch's indices as its
subsample, so Pyro scales the minibatch log-likelihood by ``num_data / B``: the
loss of one minibatch is an unbiased estimate of the whole data set's -ELBO.
The indices are a plain ``arange`` (no per-step ``randperm``): the DataLoader
already shuffles.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from torch.distributions import constraints

from ..metrics import classification_metrics, in_original_units, normal_mixture, ood_metrics, regression_metrics, uncertainty
from ..options import check_likelihood_options


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

    #: The summary metrics of :meth:`metrics` (``metrics.json``'s ``test``): what a sweep summarises and a sweeper may
    #: optimise; ``ood_metric_names``: those :meth:`ood_metrics` adds.
    metric_names: Tuple[str, ...] = ()
    ood_metric_names: Tuple[str, ...] = ()

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> Dict[str, float]:
        """The metrics of the posterior predictive from the network's ``outputs`` ``(S, N, ...)`` under ``S`` weight
        draws and the ``targets`` ``(N,)``."""
        raise NotImplementedError

    def ood_metrics(self, outputs: torch.Tensor, ood_outputs: torch.Tensor) -> Dict[str, float]:
        """How well the predictive's uncertainty tells an out-of-distribution set (``ood_outputs``) from the test set
        (``outputs``): ``ood_``-prefixed metrics."""
        raise ValueError(f"out-of-distribution metrics are defined for classifiers, not a {type(self).__name__} "
                         "likelihood: leave the OOD set out")

    def in_original_units(self, metrics: Dict[str, float], target_std: float) -> Dict[str, float]:
        """``metrics`` of targets standardised by ``target_std`` in the targets' own units (unchanged here)."""
        return dict(metrics)

    def summary(self, outputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The predictive per example from the network's ``outputs`` ``(S, N, ...)`` under ``S`` weight draws: its
        mean and its uncertainty, each ``(N, ...)`` (float64)."""
        raise NotImplementedError


class Categorical(Likelihood):
    """Categorical over classes from logits of shape ``(B, C)``."""

    task = "classification"
    metric_names = ("accuracy", "nll", "ece", "brier")
    ood_metric_names = ("ood_auroc_entropy", "ood_auroc_mutual_information")

    def __init__(self):  # no options
        super().__init__()

    def distribution(self, outputs):
        return dist.Categorical(logits=outputs)

    def metrics(self, outputs, targets):
        """:func:`~pyro_bnn.metrics.classification_metrics` of the class probabilities."""
        return classification_metrics(outputs.softmax(-1), targets)

    def summary(self, outputs):
        """``probs`` (the predictive mean's class probabilities) and ``entropy``, ``expected_entropy``,
        ``mutual_information`` (:func:`~pyro_bnn.metrics.uncertainty`)."""
        probs = outputs.softmax(-1).double()
        return {"probs": probs.mean(0), **uncertainty(probs)}

    def ood_metrics(self, outputs, ood_outputs):
        """:func:`~pyro_bnn.metrics.ood_metrics` of the class probabilities, prefixed ``ood_``."""
        return {f"ood_{k}": v for k, v in ood_metrics(outputs.softmax(-1), ood_outputs.softmax(-1)).items()}

    def check_num_outputs(self, num_outputs: int) -> None:
        if num_outputs < 2:
            raise ValueError(f"a Categorical likelihood needs a logit per class (>= 2 outputs), the network has "
                             f"{num_outputs}: build it with num_outputs=<number of classes>")


class Regression(Likelihood):
    """Base class of the Normal observation models: :meth:`loc_scale` gives each example's mean and noise sd."""

    task = "regression"
    metric_names = ("rmse", "log_likelihood", "coverage_90", "predictive_std", "aleatoric_std", "epistemic_std")
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

    def metrics(self, outputs, targets):
        """:func:`~pyro_bnn.metrics.regression_metrics` of the mixture of the draws' Normals."""
        locs, scales = self.loc_scale(outputs)
        return regression_metrics(locs, torch.as_tensor(scales).detach().cpu(), targets)

    def summary(self, outputs):
        """``mean`` and ``std`` of the mixture of the draws' Normals, and the two parts of its variance:
        ``aleatoric_std`` (the noise, ``sqrt(mean_s sigma_s^2)``) and ``epistemic_std`` (the sd of the draws' means)."""
        locs, sigma = self.loc_scale(outputs)
        locs = locs.double()
        return normal_mixture(locs, torch.as_tensor(sigma).detach().to(locs.device).double().expand_as(locs))

    def in_original_units(self, metrics, target_std):
        """:func:`~pyro_bnn.metrics.in_original_units`."""
        return in_original_units(metrics, target_std)

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
        check_likelihood_options(scale=scale)
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
        check_likelihood_options(min_scale=min_scale)
        self.min_scale = float(min_scale)

    def loc_scale(self, outputs):
        return outputs[..., 0], self.min_scale + torch.nn.functional.softplus(outputs[..., 1])


#: The likelihood a data set of each task gets unless another is chosen.
LIKELIHOOD_OF_TASK = {"classification": Categorical, "regression": Gaussian}


__all__ = ["Categorical", "Gaussian", "HeteroscedasticGaussian"]
