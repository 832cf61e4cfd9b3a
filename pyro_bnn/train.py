"""``python -m pyro_bnn.train``: forwards to the Hydra app's training entry point, :mod:`pyro_bnn.app.train`."""

from .app.train import main, train

__all__ = ["main", "train"]

if __name__ == "__main__":
    main()
