"""Files: atomic writes, and the saved posterior's format (imported at the first use of one of its names)."""

from ..lazy import lazy_names

__getattr__, __dir__ = lazy_names(__name__, ("posterior",))
