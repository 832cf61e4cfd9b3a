"""Truth check: Bayesian linear regression with known noise has an exact Gaussian posterior.

With a Normal prior and a Gaussian likelihood of known sigma, the posterior over
(w, b) is N(mu, Lambda^-1) with Lambda = Phi^T Phi / sigma^2 + I / s0^2 and
mu = Lambda^-1 Phi^T y / sigma^2 (Phi = [X, 1]). The mean-field Normal that
maximises the ELBO has means mu and variances 1 / diag(Lambda).
"""

import torch
from torch.utils.data import TensorDataset

from helpers import PRIOR_SCALE, SIGMA, exact_posterior
from pyro_bnn import BayesianMLP, Gaussian, MeanFieldELBO, NormalPrior, Schedule, auto_normal, fit, make_loader

N = 200


def test_mean_field_guide_converges_to_the_exact_mean_and_the_mean_field_variances():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 2, generator=g)
    y = x @ torch.tensor([1.5, -0.7]) + 0.4 + SIGMA * torch.randn(N, generator=g)
    mean, precision = exact_posterior(x, y)
    mf_std = precision.diagonal().rsqrt()

    model = BayesianMLP(2, 1, hidden=(), prior=NormalPrior(PRIOR_SCALE),
                        likelihood=Gaussian(SIGMA, learn_scale=False), num_data=N)
    guide = auto_normal(model, init_scale=0.01, init_loc="median")
    fit(model, guide, make_loader(TensorDataset(x, y), N), Schedule(epochs=1500, lr=0.02, lr_schedule="cosine"),
        MeanFieldELBO(num_particles=2, kl="analytic"))

    loc_w, scale_w = guide.loc_and_scale("net.1.weight")
    loc_b, scale_b = guide.loc_and_scale("net.1.bias")
    fitted_mean = torch.cat([loc_w.flatten(), loc_b.flatten()]).detach().double()
    fitted_std = torch.cat([scale_w.flatten(), scale_b.flatten()]).detach().double()
    # means within 10% of a posterior standard deviation; standard deviations within 5%
    assert torch.all((fitted_mean - mean).abs() < 0.1 * mf_std), (fitted_mean, mean, mf_std)
    assert torch.all((fitted_std / mf_std - 1).abs() < 0.05), (fitted_std / mf_std)
    # and the mean-field variances are smaller than the true marginal variances (it under-counts correlation)
    assert torch.all(mf_std <= torch.linalg.inv(precision).diagonal().sqrt() + 1e-12)
