"""Files: atomic writes, and the saved posterior's format."""

from .posterior import *  # noqa: F401,F403
from . import posterior

__all__ = [*posterior.__all__]
