"""The model: a network whose Linear/Conv layers are Bayesian (which layers, their output through the estimator
in effect), the priors over their weights, and the likelihoods that observe the data."""

from .networks import *  # noqa: F401,F403
from .priors import *  # noqa: F401,F403
from .likelihoods import *  # noqa: F401,F403
from . import likelihoods, networks, priors

__all__ = [*networks.__all__, *priors.__all__, *likelihoods.__all__]
