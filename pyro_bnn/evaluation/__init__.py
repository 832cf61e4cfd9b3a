"""Evaluation: the posterior predictive and its metrics, posterior health, and the NUTS reference."""

from .predictive import *  # noqa: F401,F403
from .health import *  # noqa: F401,F403
from .reference import *  # noqa: F401,F403
from . import health, predictive, reference

__all__ = [*predictive.__all__, *health.__all__, *reference.__all__]
