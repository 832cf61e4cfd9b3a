"""The fused mean-field step: Pyro's ELBOs given the same noise, the same expectations, the same guide."""

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from helpers import FixedNoise, assert_close, small_mlp, spread_guide
from pyro_bnn import BayesianCNN, LaplacePrior, NormalPrior, auto_delta, auto_normal, fit, initialize_guide, make_loader
from pyro_bnn.fused import FusedMeanField
from pyro_bnn.inference import training_objective

PRIORS = [NormalPrior(0.7, loc=0.1), NormalPrior(1.0, fan_in=True)]  # m0 != 0; a different scale per layer


@pytest.mark.parametrize("prior", PRIORS, ids=["loc0.1", "fan_in"])
@pytest.mark.parametrize("kl, pyro_elbo", [("analytic", TraceMeanField_ELBO), ("mc", Trace_ELBO)])
def test_loss_and_gradients_equal_pyros_elbo_given_the_same_noise(small_digits, prior, kl, pyro_elbo):
    x, y = (t[:64] for t in small_digits[0].tensors)
    model = small_mlp(num_data=1437)
    model = type(model)((1, 8, 8), 10, hidden=(16,), prior=prior, num_data=1437)
    guide = spread_guide(model, x, y)
    fused = FusedMeanField(model, guide, kl=kl)
    pyro.set_rng_seed(5)
    terms = fused(x, y)
    terms.loss.backward()
    pyro.set_rng_seed(5)
    noise = dict(zip(fused.names, torch.randn_like(fused.loc).split(fused.sizes)))  # the draw fused made
    expected = pyro_elbo().differentiable_loss(model, FixedNoise(noise)(guide), x, y)
    expected.backward()
    assert_close(terms.loss, expected, rtol=1e-5)
    assert_close(terms.kl, sum(terms.kl_sites.values()), rtol=1e-6)
    for flat, params in ((fused.loc, guide.locs), (fused.log_scale, guide.scales)):
        pyro_grad = torch.cat([params.get_parameter(name + "_unconstrained").grad.reshape(-1) for name in fused.names])
        torch.testing.assert_close(flat.grad, pyro_grad, rtol=1e-4, atol=1e-4 * float(pyro_grad.abs().max()))


def test_analytic_kl_does_not_depend_on_the_noise_and_mc_kl_averages_to_it(small_digits):
    x, y = (t[:64] for t in small_digits[0].tensors)
    model = small_mlp(num_data=1437)
    guide = spread_guide(model, x, y)
    analytic, sampled = FusedMeanField(model, guide, kl="analytic"), FusedMeanField(model, guide, kl="mc")
    with torch.no_grad():
        closed = torch.stack([analytic(x, y).kl for _ in range(5)])
        draws = torch.stack([sampled(x, y).kl for _ in range(2000)])
    assert float(closed.std()) == 0.0
    stderr = float(draws.std()) / 2000 ** 0.5
    assert abs(float(draws.mean()) - float(closed[0])) < 4 * stderr, (float(draws.mean()), float(closed[0]), stderr)


def assert_fused_loss_has_the_expectation_of_trace_elbo(model, x, y, estimator, n=600):
    guide = spread_guide(model, x, y)
    fused = FusedMeanField(model, guide, kl="analytic", estimator=estimator)
    with torch.no_grad():
        ours = torch.stack([fused(x, y).loss for _ in range(n)])
        theirs = torch.stack([Trace_ELBO().loss(model, guide, x, y) * torch.ones(()) for _ in range(n)])
    stderr = float((ours.var() / n + theirs.var() / n) ** 0.5)
    assert abs(float(ours.mean() - theirs.mean())) < 4 * stderr, (float(ours.mean()), float(theirs.mean()), stderr)


@pytest.mark.parametrize("estimator", ["shared", "local_reparameterization", "dense_local_reparameterization", "flipout"])
def test_each_estimator_in_the_fused_step_has_the_expectation_of_pyros_trace_elbo(small_digits, estimator):
    x, y = (t[:64] for t in small_digits[0].tensors)
    assert_fused_loss_has_the_expectation_of_trace_elbo(small_mlp(num_data=1437), x, y, estimator)


@pytest.mark.parametrize("estimator", ["shared", "dense_local_reparameterization", "flipout"])
def test_estimators_exact_for_conv_layers_have_the_expectation_of_pyros_trace_elbo_on_a_cnn(small_digits, estimator):
    """The conv layers' shared draw (dense variant) and Flipout are exact per example: the fused step's loss
    has the expectation of Pyro's Trace_ELBO on a CNN too."""
    x, y = (t[:64] for t in small_digits[0].tensors)
    model = BayesianCNN((1, 8, 8), 10, channels=(4,), hidden=(16,), num_data=1437)
    assert_fused_loss_has_the_expectation_of_trace_elbo(model, x, y, estimator)


def test_local_reparameterization_lowers_the_fused_steps_gradient_variance(small_digits):
    x, y = (t[:32] for t in small_digits[0].tensors)
    model = small_mlp(num_data=1437, hidden=(50,))
    guide = auto_normal(model, init_scale=0.1)
    initialize_guide(guide, x, y)
    variance = {}
    for estimator in ("shared", "local_reparameterization", "flipout"):
        fused = FusedMeanField(model, guide, estimator=estimator)
        grads = []
        for _ in range(60):
            fused.loc.grad = None
            fused(x, y).loss.backward()
            grads.append(fused.loc.grad[-fused.sizes[-1] - fused.sizes[-2]:-fused.sizes[-1]].clone())  # net.3.weight
        variance[estimator] = float(torch.stack(grads).var(0).mean())
    assert variance["local_reparameterization"] < 0.5 * variance["shared"], variance
    assert variance["flipout"] < 0.5 * variance["shared"], variance


def test_the_guide_reads_and_saves_the_trained_flat_vectors(small_digits):
    train = small_digits[0]
    model = BayesianCNN((1, 8, 8), 10, channels=(4,), hidden=(16,), num_data=len(train))
    guide = auto_normal(model)
    fit(model, guide, make_loader(train, 100, shuffle=True, seed=0), epochs=2, lr=1e-2, fused=True)
    fused = FusedMeanField(model, guide)  # views again: the same numbers
    x = train.tensors[0][:5]
    for name, loc, log_scale in zip(fused.names, fused.loc.split(fused.sizes), fused.log_scale.split(fused.sizes)):
        guide_loc, guide_scale = guide._get_loc_and_scale(name)
        assert torch.equal(guide_loc.reshape(-1), loc) and torch.allclose(guide_scale.reshape(-1), log_scale.exp())
    fresh = auto_normal(BayesianCNN((1, 8, 8), 10, channels=(4,), hidden=(16,), num_data=len(train)))
    initialize_guide(fresh, x, train.tensors[1][:5])
    fresh.load_state_dict(guide.state_dict())
    for name in fused.names:
        assert torch.equal(fresh._get_loc_and_scale(name)[1], guide._get_loc_and_scale(name)[1])


def test_fused_and_traced_training_reach_the_same_loss(small_digits):
    """Same objective, different noise draws: after training, the two losses agree to a few percent."""
    train = small_digits[0]
    finals = {}
    for fused in (True, False):
        pyro.set_rng_seed(0)
        model = small_mlp(num_data=len(train))
        history = fit(model, auto_normal(model), make_loader(train, 50, shuffle=True, seed=0), epochs=30, lr=1e-2,
                      fused=fused)
        finals[fused] = sum(r["loss"] for r in history[-5:]) / 5
    assert abs(finals[True] - finals[False]) < 0.05 * finals[False], finals


def test_auto_falls_back_to_pyros_traces_and_true_names_why_it_cannot(small_digits):
    x, y = (t[:8] for t in small_digits[0].tensors)
    model = small_mlp()
    assert training_objective(model, initialize_guide(auto_normal(model), x, y)).fused
    cases = [(small_mlp(), auto_delta, r"not the mean-field Normal \(guide=auto_normal\)"),
             (type(small_mlp())((1, 8, 8), 10, hidden=(16,), prior=LaplacePrior(1.0)), auto_normal,
              "the prior of net.1.weight is not a Normal")]
    for model, build, reason in cases:
        guide = initialize_guide(build(model), x, y)
        assert not training_objective(model, guide, fused="auto").fused
        with pytest.raises(ValueError, match=reason):
            training_objective(model, guide, fused=True)
    with pytest.raises(ValueError, match="fused='yes': use 'auto', True or False"):
        training_objective(model, guide, fused="yes")
    with pytest.raises(ValueError, match="run it once first"):
        FusedMeanField(small_mlp(), auto_normal(small_mlp()))


@pytest.mark.parametrize("estimator", ["shared", "local_reparameterization", "dense_local_reparameterization", "flipout"])
def test_the_sequential_plan_computes_what_the_models_own_forward_computes(small_digits, estimator):
    """An MLP's layers run without Pyro's per-site messages: the same loss and gradients to the last bit."""
    x, y = (t[:64] for t in small_digits[0].tensors)
    results = []
    for planned in (True, False):
        pyro.set_rng_seed(0)
        model = small_mlp(num_data=1437)
        fused = FusedMeanField(model, spread_guide(model, x, y), estimator=estimator)
        assert fused.plan is not None
        fused.plan = fused.plan if planned else None
        pyro.set_rng_seed(3)
        terms = fused(x, y)
        terms.loss.backward()
        results.append((terms.loss.detach(), fused.loc.grad, fused.log_scale.grad))
    for planned, traced in zip(*results):
        assert torch.equal(planned, traced)


def test_the_sequential_plan_leaves_other_networks_to_the_models_forward(small_digits):
    x, y = (t[:64] for t in small_digits[0].tensors)
    partial = type(small_mlp())((1, 8, 8), 10, hidden=(16,), num_data=1437, bayesian="last")
    assert FusedMeanField(partial, spread_guide(partial, x, y)).plan is None  # point-estimate layers
    hooked = small_mlp(num_data=1437)
    hooked.net[2].register_forward_hook(lambda module, args, out: out * 2)
    assert FusedMeanField(hooked, spread_guide(hooked, x, y)).plan is None
    cnn = BayesianCNN((1, 8, 8), 10, channels=(4,), hidden=(8,), num_data=1437)
    assert FusedMeanField(cnn, spread_guide(cnn, x, y)).plan is None
