"""Training: one SVI step over a state value (``SVIStep.init`` / ``update``), the schedules (epochs, learning
rate, KL weight), the loop ``fit``, the run's state, the loss monitor and data-parallel runs."""

from .loop import *  # noqa: F401,F403
from .schedules import *  # noqa: F401,F403
from .step import *  # noqa: F401,F403
from . import loop, schedules, step

__all__ = [*loop.__all__, *schedules.__all__, *step.__all__]
