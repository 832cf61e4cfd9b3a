"""The model: a network whose Linear/Conv layers are Bayesian (which layers, their output through the estimator
in effect), the priors over their weights, and the likelihoods that observe the data."""

import pyro

from .networks import *  # noqa: F401,F403
from .priors import *  # noqa: F401,F403
from .likelihoods import *  # noqa: F401,F403
from . import likelihoods, networks, priors

__all__ = [*networks.__all__, *priors.__all__, *likelihoods.__all__]

# Every PyroModule's parameters live in that module, never in Pyro's global param store: two models in one process
# never share parameters. Set before the library builds its first model (every path to one imports this seam).
pyro.settings.set(module_local_params=True)
