"""The ELBO's terms: Pyro's traced terms, the mean-field ELBO as a Pyro ELBO (its fused step), the closed-form
Normal KL, empirical-Bayes prior scales, and the estimators (how a Bayesian layer draws its noise)."""

from .mean_field_elbo import *  # noqa: F401,F403
from .elbo import *  # noqa: F401,F403
from .fused import *  # noqa: F401,F403
from .estimators import *  # noqa: F401,F403
from .empirical_bayes import *  # noqa: F401,F403
from . import elbo, empirical_bayes, estimators, fused, mean_field_elbo

__all__ = [*mean_field_elbo.__all__, *elbo.__all__, *fused.__all__, *estimators.__all__, *empirical_bayes.__all__]
