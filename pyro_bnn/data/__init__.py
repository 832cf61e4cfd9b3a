"""Data: the data sets (one module per family: digits, toy regression, UCI, torchvision sets; the OOD sets), the
registry that loads them by name, their immutable splits, and loaders."""

from .registry import *  # noqa: F401,F403
from .splits import *  # noqa: F401,F403
from .uci import *  # noqa: F401,F403
from .ood import *  # noqa: F401,F403
from .loaders import *  # noqa: F401,F403
from . import loaders, ood, registry, splits, uci

__all__ = [*registry.__all__, *splits.__all__, *uci.__all__, *ood.__all__, *loaders.__all__]
