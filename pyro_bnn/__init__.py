"""pyro_bnn: Bayesian neural networks as Pyro programs, trained by variational inference.

Library use::

    from pyro_bnn import BayesianCNN, NormalPrior, Schedule, auto_normal, fit, evaluate
    model = BayesianCNN(in_shape=(1, 8, 8), num_classes=10, prior=NormalPrior(scale=1.0), num_data=len(train_set))
    guide = auto_normal(model, init_scale=1e-3)
    history = fit(model, guide, train_loader, Schedule(epochs=100, lr=1e-2))
    metrics = evaluate(model, guide, test_loader, num_samples=100)

The seams are its subpackages, each exporting its public names: :mod:`pyro_bnn.model` (networks, priors,
likelihoods), :mod:`pyro_bnn.guides`, :mod:`pyro_bnn.objectives` (the ELBO, its fused step, the estimators),
:mod:`pyro_bnn.training` (the step, the schedules, ``fit``), :mod:`pyro_bnn.evaluation`, :mod:`pyro_bnn.data` and
:mod:`pyro_bnn.io`; this package gathers them all.

The Hydra experiment around it (``python -m pyro_bnn.train``) is :mod:`pyro_bnn.app`; this package
never imports it. Each seam is imported at the first use of one of its names. Using the library sets
``pyro.settings.set(module_local_params=True)`` (in :mod:`pyro_bnn.model`): the parameters of every model and guide
live in that module, never in Pyro's global param store, so two models in one process never share parameters.
"""

from .lazy import lazy_names

#: The seams whose public names this package gathers, in the order data flows: model, guide, objective, training,
#: evaluation (and its metrics), data, files. Each is imported at the first use of one of its names (``import
#: pyro_bnn`` alone imports neither torch nor pyro: the app's commands that only compose a config start fast).
SEAMS = ("model", "guides", "objectives", "training", "evaluation", "metrics", "data", "io")

__getattr__, __dir__ = lazy_names(__name__, SEAMS)
