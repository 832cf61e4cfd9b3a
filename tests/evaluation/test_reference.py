"""NUTS on the same Pyro model: checked against the exact posterior of Bayesian linear regression."""

import pytest
import torch
from torch.utils.data import TensorDataset

from helpers import PRIOR_SCALE, SIGMA, exact_posterior
from pyro_bnn import BayesianMLP, Gaussian, NormalPrior, make_loader, nuts_posterior, predict_with_samples
from pyro_bnn.evaluation.reference import nuts_warnings

N = 50


def linear_regression():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(N, 2, generator=g)
    y = x @ torch.tensor([1.5, -0.7]) + 0.4 + SIGMA * torch.randn(N, generator=g)
    model = BayesianMLP(2, 1, hidden=(), prior=NormalPrior(PRIOR_SCALE),
                        likelihood=Gaussian(SIGMA, learn_scale=False), num_data=N)
    return model, x, y


def test_nuts_samples_the_exact_posterior_of_bayesian_linear_regression():
    model, x, y = linear_regression()
    samples, diagnostics = nuts_posterior(model, x, y, num_samples=400, warmup_steps=200)
    draws = torch.cat([samples["net.1.weight"].reshape(400, 2), samples["net.1.bias"].reshape(400, 1)], 1).double()
    mean, precision = exact_posterior(x, y)
    std = torch.linalg.inv(precision).diagonal().sqrt()
    # 400 draws with n_eff > 100: the sample mean is within 0.35 sd, the sample sd within 20%
    assert diagnostics["min_n_eff"] > 100 and diagnostics["max_r_hat"] < 1.05, diagnostics
    assert torch.all((draws.mean(0) - mean).abs() < 0.35 * std), (draws.mean(0), mean, std)
    assert torch.all((draws.std(0) / std - 1).abs() < 0.2), draws.std(0) / std
    # the true correlation between the two weights shows up (mean field cannot have it)
    true_corr = torch.linalg.inv(precision)[0, 1] / (std[0] * std[1])
    assert torch.corrcoef(draws[:, :2].T)[0, 1] == pytest.approx(float(true_corr), abs=0.15)
    outputs, _ = predict_with_samples(model, samples, make_loader(TensorDataset(x, y), 25))
    assert outputs.shape == (400, N, 1)


def test_nuts_needs_the_whole_training_set():
    model, x, y = linear_regression()
    with pytest.raises(ValueError, match="num_data=50 but 10 examples"):
        nuts_posterior(model, x[:10], y[:10], num_samples=5, warmup_steps=5)


def test_nuts_warns_when_its_chains_have_not_converged(caplog):
    bad = {"max_r_hat": 3.6, "min_n_eff": 2.4, "divergences": 3}
    warnings = nuts_warnings(bad)
    assert [w.split(":")[0] for w in warnings] == ["max r_hat 3.60 > 1.05", "min n_eff 2.4 < 20", "3 divergent transitions"]
    assert nuts_warnings({"max_r_hat": 1.01, "min_n_eff": 150.0, "divergences": 0}) == []
