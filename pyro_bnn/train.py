"""``python -m pyro_bnn.train``: forwards to the Hydra app's training entry point, :mod:`pyro_bnn.app.train`."""

from .app.train import main

__all__ = ["main"]  # and train, on first use


def __getattr__(name: str):
    """:func:`~pyro_bnn.app.experiment.train`, imported when asked for (the command starts without the library)."""
    if name == "train":
        from .app.experiment import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
