"""pyro_bnn: Bayesian neural networks as Pyro programs, trained by variational inference.

Library use::

    from pyro_bnn import BayesianCNN, NormalPrior, auto_normal, fit, evaluate
    model = BayesianCNN(in_shape=(1, 8, 8), num_classes=10, prior=NormalPrior(scale=1.0), num_data=len(train_set))
    guide = auto_normal(model, init_scale=1e-3)
    history = fit(model, guide, train_loader, epochs=100, lr=1e-2, elbo="mean_field")
    metrics = evaluate(model, guide, test_loader, num_samples=100)

Importing pyro_bnn sets ``pyro.settings.set(module_local_params=True)``: the
parameters of every model and guide live in that module, never in Pyro's global
param store, so two models in one process never share parameters.
"""

import pyro

pyro.settings.set(module_local_params=True)

from .data import DataSplits, load_data, make_loader  # noqa: E402
from .elbo import ElboTerms, elbo_terms  # noqa: E402
from .evaluation import (classification_metrics, evaluate, ood_metrics, posterior_samples, predict,  # noqa: E402
                         predict_with_samples, regression_metrics)
from .reference import nuts_posterior  # noqa: E402
from .guides import MeanFieldNormal, auto_delta, auto_lowrank, auto_normal, build_guide  # noqa: E402
from .inference import KLWeight, fit  # noqa: E402
from .likelihoods import Categorical, Gaussian  # noqa: E402
from .models import BayesianCNN, BayesianMLP, BayesianModel, pretrained_weights, to_bayesian  # noqa: E402
from .priors import LaplacePrior, NormalPrior, Prior, StudentTPrior  # noqa: E402

__all__ = [
    "BayesianCNN", "BayesianMLP", "BayesianModel", "to_bayesian", "pretrained_weights",
    "Prior", "NormalPrior", "LaplacePrior", "StudentTPrior",
    "Categorical", "Gaussian",
    "MeanFieldNormal", "auto_normal", "auto_delta", "auto_lowrank", "build_guide",
    "KLWeight", "fit", "ElboTerms", "elbo_terms",
    "evaluate", "predict", "posterior_samples", "predict_with_samples",
    "classification_metrics", "regression_metrics", "ood_metrics", "nuts_posterior",
    "DataSplits", "load_data", "make_loader",
]
