"""pyro_bnn: Bayesian neural networks as Pyro programs, trained by variational inference.

Library use::

    from pyro_bnn import BayesianCNN, NormalPrior, auto_normal, fit, evaluate
    model = BayesianCNN(in_shape=(1, 8, 8), num_classes=10, prior=NormalPrior(scale=1.0), num_data=len(train_set))
    guide = auto_normal(model, init_scale=1e-3)
    history = fit(model, guide, train_loader, epochs=100, lr=1e-2, elbo="mean_field")
    metrics = evaluate(model, guide, test_loader, num_samples=100)

The Hydra experiment around it (``python -m pyro_bnn.train``) is :mod:`pyro_bnn.app`; this package
never imports it. Importing pyro_bnn sets ``pyro.settings.set(module_local_params=True)``: the
parameters of every model and guide live in that module, never in Pyro's global param store, so two
models in one process never share parameters.
"""

import pyro

pyro.settings.set(module_local_params=True)

# The imports below are grouped by what they are, not sorted (ruff's isort is off for this file).

# models, priors and likelihoods
from .models import BayesianCNN, BayesianMLP, BayesianModel, cnn_network, pretrained_weights, to_bayesian
from .priors import LaplacePrior, MopedPrior, NormalPrior, Prior, StudentTPrior
from .empirical_bayes import EmpiricalBayes, prior_scales
from .likelihoods import Categorical, Gaussian, HeteroscedasticGaussian

# guides
from .guides import MeanFieldNormal, auto_delta, auto_lowrank, auto_normal, initialize_guide

# the loss and training
from .elbo import ElboTerms, elbo_terms
from .estimators import (
    ESTIMATORS,
    DenseLocalReparameterization,
    Flipout,
    LocalReparameterization,
    SharedDraw,
    estimator_handler,
)
from .fused import FusedMeanField
from .inference import Hooks, TrainingInterrupted, fit
from .objective import MeanFieldELBO
from .schedules import KLWeight, Schedule, lr_scheduler
from .step import SVIStep, optimizer

# evaluation, posterior health, the NUTS reference
from .evaluation import (
    classification_metrics,
    evaluate,
    in_original_units,
    ood_metrics,
    posterior_samples,
    predict,
    predict_with_samples,
    regression_metrics,
    score,
)
from .health import posterior_health
from .reference import nuts_posterior

# data and saved posteriors
from .data import DataSplits, load_data, load_ood, load_uci, make_loader
from .serialization import load_posterior, save_posterior

__all__ = [
    # models, priors and likelihoods
    "BayesianCNN", "BayesianMLP", "BayesianModel", "to_bayesian", "pretrained_weights", "cnn_network",
    "Prior", "NormalPrior", "LaplacePrior", "StudentTPrior", "MopedPrior", "EmpiricalBayes", "prior_scales",
    "Categorical", "Gaussian", "HeteroscedasticGaussian",
    # guides
    "MeanFieldNormal", "auto_normal", "auto_delta", "auto_lowrank", "initialize_guide",
    # the loss and training
    "ElboTerms", "elbo_terms", "ESTIMATORS", "estimator_handler", "SharedDraw", "LocalReparameterization",
    "DenseLocalReparameterization", "Flipout", "FusedMeanField", "KLWeight", "TrainingInterrupted", "fit",
    "MeanFieldELBO", "Schedule", "Hooks", "SVIStep", "optimizer", "lr_scheduler",
    # evaluation, posterior health, the NUTS reference
    "evaluate", "predict", "posterior_samples", "predict_with_samples", "score",
    "classification_metrics", "regression_metrics", "in_original_units", "ood_metrics", "posterior_health", "nuts_posterior",
    # data and saved posteriors
    "DataSplits", "load_data", "load_uci", "load_ood", "make_loader", "load_posterior", "save_posterior",
]
