"""Training: one SVI step over a state value (``SVIStep.init`` / ``update``), the schedules (epochs, learning
rate, KL weight), the loop ``fit``, the run's state, the loss monitor and data-parallel runs.

Each module is imported at the first use of one of its names: the schedules need no torch, and the app checks a
config with them before it imports torch.
"""

from ..lazy import lazy_names

__getattr__, __dir__ = lazy_names(__name__, ("loop", "schedules", "step", "replicates"))
