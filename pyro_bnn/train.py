"""``python -m pyro_bnn.train``: forwards to the Hydra app's training entry point, :mod:`pyro_bnn.app.train`."""

from .app import train as _entry
from .app.train import main

__all__ = ["main"]  # and train, on first use


def __getattr__(name: str):
    """What the entry point gives on first use (``train``: :func:`pyro_bnn.app.experiment.train`)."""
    return getattr(_entry, name)


if __name__ == "__main__":
    main()
