"""Data: the data sets (digits, toy regression, UCI, torchvision sets, OOD sets), their splits, and loaders."""

from .datasets import *  # noqa: F401,F403
from .loaders import *  # noqa: F401,F403
from . import datasets, loaders

__all__ = [*datasets.__all__, *loaders.__all__]
