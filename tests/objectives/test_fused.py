"""The fused mean-field step: Pyro's ELBOs given the same noise, the same expectations, the same guide."""

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from helpers import FixedNoise, assert_close, assert_same_gradients, fused_noise, guide_gradients, small_mlp, spread_guide
from pyro_bnn import (
    BayesianCNN,
    LaplacePrior,
    MeanFieldELBO,
    NormalPrior,
    Schedule,
    auto_delta,
    auto_normal,
    fit,
    initialize_guide,
    make_loader,
)
from pyro_bnn.objectives.fused import FusedMeanField

PRIORS = [NormalPrior(0.7, loc=0.1), NormalPrior(1.0, fan_in=True)]  # m0 != 0; a different scale per layer


@pytest.mark.parametrize("prior", PRIORS, ids=["loc0.1", "fan_in"])
@pytest.mark.parametrize("kl, pyro_elbo", [("analytic", TraceMeanField_ELBO), ("mc", Trace_ELBO)])
def test_loss_and_gradients_equal_pyros_elbo_given_the_same_noise(small_digits, prior, kl, pyro_elbo):
    x, y = (t[:64] for t in small_digits[0].tensors)
    model = small_mlp(num_data=1437)
    model = type(model)((1, 8, 8), 10, hidden=(16,), prior=prior, num_data=1437)
    guide = spread_guide(model, x, y)
    elbo = MeanFieldELBO(kl=kl, fused=True)
    pyro.set_rng_seed(5)
    loss = elbo.loss_and_grads(model, guide, x, y)  # Pyro's interface: the gradients land in the guide's parameters
    ours = guide_gradients(guide)
    expected = pyro_elbo().differentiable_loss(model, FixedNoise(fused_noise(guide, 5))(guide), x, y)
    expected.backward()
    assert_close(loss, expected, rtol=1e-5)
    assert_same_gradients(ours, guide_gradients(guide))
    pyro.set_rng_seed(5)
    terms = elbo.terms(model, guide, x, y)
    assert_close(terms.loss, loss, rtol=1e-6)
    assert_close(terms.kl, sum(terms.kl_sites.values()), rtol=1e-6)


def test_pyros_svi_trains_a_pyro_bnn_pair_with_the_mean_field_elbo(small_digits):
    """``pyro.infer.SVI(model, guide, optim, loss=MeanFieldELBO())``: its first loss is TraceMeanField_ELBO's given the
    same noise, it steps the guide's own parameters, and the loss goes down."""
    x, y = (t[:64] for t in small_digits[0].tensors)
    model = small_mlp(num_data=1437)
    guide = spread_guide(model, x, y)
    pyro.clear_param_store()
    expected = TraceMeanField_ELBO().loss(model, FixedNoise(fused_noise(guide, 5))(guide), x, y)
    before = {name: p.detach().clone() for name, p in guide.named_parameters()}
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), loss=MeanFieldELBO())
    pyro.set_rng_seed(5)
    first = svi.step(x, y)
    assert first == pytest.approx(expected, rel=1e-5)
    assert all(not torch.equal(before[name], p) for name, p in guide.named_parameters())  # every parameter stepped
    losses = [svi.step(x, y) for _ in range(150)]
    assert sum(losses[-10:]) / 10 < 0.5 * first
    pyro.clear_param_store()


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
        elbo = MeanFieldELBO(estimator=estimator, fused=True)
        grads = []
        for _ in range(60):
            elbo.loss_and_grads(model, guide, x, y)
            grads.append(guide_gradients(guide)["locs.net.3.weight_unconstrained"])
        variance[estimator] = float(torch.stack(grads).var(0).mean())
    assert variance["local_reparameterization"] < 0.5 * variance["shared"], variance
    assert variance["flipout"] < 0.5 * variance["shared"], variance


def test_the_fused_step_trains_the_guides_own_parameters(small_digits):
    train = small_digits[0]
    model = BayesianCNN((1, 8, 8), 10, channels=(4,), hidden=(16,), num_data=len(train))
    guide = initialize_guide(auto_normal(model), *(t[:5] for t in train.tensors))
    before = {name: (p, p.detach().clone()) for name, p in guide.named_parameters()}
    fit(model, guide, make_loader(train, 100, shuffle=True, seed=0), Schedule(epochs=2, lr=1e-2),
        MeanFieldELBO(fused=True))
    for name, p in guide.named_parameters():
        assert p is before[name][0] and not torch.equal(p, before[name][1])  # the same tensors, trained
    fresh = auto_normal(BayesianCNN((1, 8, 8), 10, channels=(4,), hidden=(16,), num_data=len(train)))
    initialize_guide(fresh, *(t[:5] for t in train.tensors))
    fresh.load_state_dict(guide.state_dict())
    for name, _ in guide.prototype_trace.iter_stochastic_nodes():
        assert all(torch.equal(a, b) for a, b in zip(fresh.loc_and_scale(name), guide.loc_and_scale(name)))


def test_fused_and_traced_training_reach_the_same_loss(small_digits):
    """Same objective, different noise draws: after training, the two losses agree to a few percent."""
    train = small_digits[0]
    finals = {}
    for fused in (True, False):
        pyro.set_rng_seed(0)
        model = small_mlp(num_data=len(train))
        history = fit(model, auto_normal(model), make_loader(train, 50, shuffle=True, seed=0), Schedule(epochs=30,
                      lr=1e-2), MeanFieldELBO(fused=fused))
        finals[fused] = sum(r["loss"] for r in history[-5:]) / 5
    assert abs(finals[True] - finals[False]) < 0.05 * finals[False], finals


def test_auto_falls_back_to_pyros_traces_and_true_names_why_it_cannot(small_digits):
    x, y = (t[:8] for t in small_digits[0].tensors)
    model = small_mlp()
    assert MeanFieldELBO().is_fused(model, initialize_guide(auto_normal(model), x, y))
    cases = [(small_mlp(), auto_delta, r"not the mean-field Normal \(guide=auto_normal\)"),
             (type(small_mlp())((1, 8, 8), 10, hidden=(16,), prior=LaplacePrior(1.0)), auto_normal,
              "the prior of net.1.weight is not a Normal")]
    for model, build, reason in cases:
        guide = initialize_guide(build(model), x, y)
        assert not MeanFieldELBO(fused="auto").is_fused(model, guide)
        with pytest.raises(ValueError, match=reason):
            MeanFieldELBO(fused=True).is_fused(model, guide)
    with pytest.raises(ValueError, match="fused='yes': use 'auto', True or False"):
        MeanFieldELBO(fused="yes")
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
        guide = spread_guide(model, x, y)
        fused = FusedMeanField(model, guide, estimator=estimator)
        assert fused.plan is not None
        fused.plan = fused.plan if planned else None
        pyro.set_rng_seed(3)
        terms = fused(x, y)
        terms.loss.backward()
        fused.to_site_gradients()
        results.append((terms.loss.detach(), guide_gradients(guide)))
    (loss, grads), (traced_loss, traced_grads) = results
    assert torch.equal(loss, traced_loss) and sorted(grads) == sorted(traced_grads)
    assert all(torch.equal(grads[name], traced_grads[name]) for name in grads)


def test_the_sequential_plan_leaves_other_networks_to_the_models_forward(small_digits):
    x, y = (t[:64] for t in small_digits[0].tensors)
    partial = type(small_mlp())((1, 8, 8), 10, hidden=(16,), num_data=1437, bayesian="last")
    assert FusedMeanField(partial, spread_guide(partial, x, y)).plan is None  # point-estimate layers
    hooked = small_mlp(num_data=1437)
    hooked.net[2].register_forward_hook(lambda module, args, out: out * 2)
    assert FusedMeanField(hooked, spread_guide(hooked, x, y)).plan is None
    cnn = BayesianCNN((1, 8, 8), 10, channels=(4,), hidden=(8,), num_data=1437)
    assert FusedMeanField(cnn, spread_guide(cnn, x, y)).plan is None
