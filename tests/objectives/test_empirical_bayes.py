"""Empirical-Bayes prior scales: the closed-form optimum, the envelope theorem, fused and traced paths alike."""

import pyro
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO
from torch.distributions import InverseGamma, Normal, kl_divergence

from helpers import FixedNoise, assert_close, assert_same_gradients, fused_noise, guide_gradients, spread_guide
from pyro_bnn import BayesianMLP, MeanFieldELBO, NormalPrior, Schedule, auto_delta, fit, initialize_guide, make_loader
from pyro_bnn.objectives.empirical_bayes import EmpiricalBayes, prior_scales

ALPHAS = [0.0, 4.48]


def eb_mlp(alpha=0.0, loc=0.0, num_data=1437):
    prior = NormalPrior(0.5, loc=loc, fan_in=True, learn_scale=True, hyperprior_alpha=alpha)
    return BayesianMLP((1, 8, 8), 10, hidden=(16,), prior=prior, num_data=num_data)


def site_objective(loc, scale, variance, m0, alpha, beta):
    """KL(q || N(m0, variance)) of one site, minus the hyperprior's log-density of the variance."""
    kl = kl_divergence(Normal(loc, scale), Normal(torch.full_like(loc, m0), variance.sqrt().expand_as(loc))).sum()
    return kl if alpha == 0 else kl - InverseGamma(alpha, beta).log_prob(variance)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_the_closed_form_variance_minimises_the_kl_over_a_grid(small_digits, alpha):
    x, y = (t[:32] for t in small_digits[0].tensors)
    model = eb_mlp(alpha, loc=0.1)
    guide = spread_guide(model, x, y)
    learned = EmpiricalBayes(model)
    learned.update(guide)
    for name, beta in zip(learned.names, learned.betas.double()):
        loc, scale = (t.detach().double() for t in guide.loc_and_scale(name))
        layer, _, param = name.rpartition(".")
        best = model.get_submodule(layer).get_buffer(f"{param}_prior_scale").double() ** 2
        at_best = site_objective(loc, scale, best, 0.1, alpha, beta)
        grid = best * torch.logspace(-1, 1, 201, dtype=torch.float64)
        values = torch.stack([site_objective(loc, scale, v, 0.1, alpha, beta) for v in grid])
        assert float(at_best) <= float(values.min()) + 1e-9 * abs(float(at_best)), name
        assert 0.97 < float(grid[values.argmin()] / best) < 1.03, name  # the grid's step is 2.3%


def test_the_hyperprior_nll_is_the_inverse_gamma_log_density(small_digits):
    model = eb_mlp(alpha=4.48)
    learned = EmpiricalBayes(model)
    variances = torch.tensor([0.01, 0.2, 0.03, 1.5])
    expected = -sum(InverseGamma(4.48, b).log_prob(v) for b, v in zip(learned.betas, variances))
    assert_close(learned.hyperprior_nll(variances), expected, rtol=1e-5)
    assert_close(learned.betas[0], 5.48 * 0.5 ** 2 / 64, rtol=1e-6)  # (1 + alpha) s0^2, s0 = 0.5 / sqrt(fan_in)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_gradients_equal_those_of_the_objective_with_the_variance_differentiable(small_digits, alpha):
    """Envelope theorem: the fused step (variance set, then held fixed) has the gradients of the objective in
    which the variance is the closed-form function of the guide's means and scales."""
    x, y = (t[:64] for t in small_digits[0].tensors)
    model = eb_mlp(alpha)
    guide = spread_guide(model, x, y)
    pyro.set_rng_seed(3)
    loss = MeanFieldELBO(fused=True).loss_and_grads(model, guide, x, y)
    ours = guide_gradients(guide)
    noise = fused_noise(guide, 3)
    # Pyro's ELBO at the learned (fixed) variance, with its KL swapped for the differentiable one
    learned = EmpiricalBayes(model)
    expected = TraceMeanField_ELBO().differentiable_loss(model, FixedNoise(noise)(guide), x, y)
    for name, beta in zip(learned.names, learned.betas):
        loc, scale = guide.loc_and_scale(name)
        fixed = model.get_submodule(name.rpartition(".")[0]).get_buffer(name.rpartition(".")[2] + "_prior_scale") ** 2
        size = loc.numel() + (2 * alpha + 2 if alpha else 0)
        variance = ((loc ** 2).sum() + (scale ** 2).sum() + (2 * beta if alpha else 0)) / size
        expected = (expected - site_objective(loc, scale, fixed.detach(), 0.0, 0, None)
                    + site_objective(loc, scale, variance, 0.0, alpha, beta))
    expected.backward()
    assert_close(loss, expected, rtol=1e-5)
    assert_same_gradients(ours, guide_gradients(guide))


@pytest.mark.parametrize("alpha", ALPHAS)
def test_the_fused_and_traced_steps_agree_given_the_same_noise(small_digits, alpha):
    x, y = (t[:64] for t in small_digits[0].tensors)
    model = eb_mlp(alpha)
    guide = spread_guide(model, x, y)
    pyro.set_rng_seed(7)
    fused = MeanFieldELBO(fused=True).terms(model, guide, x, y)
    with FixedNoise(fused_noise(guide, 7)):
        pyro_terms = MeanFieldELBO(fused=False).terms(model, guide, x, y)
    assert_close(fused.loss, pyro_terms.loss, rtol=1e-5)
    assert_close(fused.hyperprior, pyro_terms.hyperprior, rtol=1e-5, atol=1e-4)
    for name in fused.kl_sites:
        assert_close(fused.kl_sites[name], pyro_terms.kl_sites[name], rtol=1e-4, atol=1e-3)


def test_training_learns_the_scales_reports_them_and_saves_them(small_digits):
    train = small_digits[0]
    model = eb_mlp(alpha=4.48, num_data=len(train))
    guide = spread_guide(model, *(t[:8] for t in train.tensors))
    history = fit(model, guide, make_loader(train, 100, shuffle=True, seed=0), Schedule(epochs=3, lr=1e-2))
    scales = prior_scales(model)
    assert sorted(scales) == ["net.1.bias", "net.1.weight", "net.3.bias", "net.3.weight"]
    assert {f"prior_scale.{name}" for name in scales} <= set(history[-1])
    assert history[-1]["hyperprior"] != 0 and history[-1]["loss"] == pytest.approx(
        history[-1]["nll"] + history[-1]["kl"] + history[-1]["hyperprior"], rel=1e-5)
    state = model.state_dict()
    assert all(float(state[f"{n.rpartition('.')[0]}.{n.rpartition('.')[2]}_prior_scale"]) == pytest.approx(s)
               for n, s in scales.items())
    assert scales["net.1.weight"] != pytest.approx(0.5 / 8)  # moved from the configured scale


def test_learned_scales_need_a_mean_field_guide_and_a_normal_prior(small_digits):
    x, y = (t[:8] for t in small_digits[0].tensors)
    model = eb_mlp()
    guide = initialize_guide(auto_delta(model), x, y)
    with pytest.raises(ValueError, match="mean-field Normal guide.*guide=auto_normal"):
        MeanFieldELBO().terms(model, guide, x, y)
    with pytest.raises(ValueError, match="hyperprior_alpha=2.0 is a hyperprior on learned scales"):
        NormalPrior(1.0, hyperprior_alpha=2.0)
