import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoNormal
from torch.distributions import biject_to

from helpers import assert_close, small_mlp, spread_guide
from pyro_bnn import auto_normal, elbo_terms, initialize_guide


def test_minibatch_loss_is_an_unbiased_estimate_of_the_full_data_loss(small_digits):
    x, y = small_digits[0].tensors
    model = small_mlp(num_data=len(x))
    guide = spread_guide(model, x, y, spread=0.3)
    fixed = poutine.replay(guide, trace=poutine.trace(guide).get_trace(x, y))  # one weight draw, reused
    full = elbo_terms(model, fixed, x, y, kl="mc")
    batches = [elbo_terms(model, fixed, x[i:i + 60], y[i:i + 60], kl="mc") for i in range(0, len(x), 60)]
    # averaging over a partition of the data = expectation over the uniformly drawn minibatch
    assert_close(sum(b.nll for b in batches) / len(batches), full.nll, rtol=1e-5)
    assert_close(sum(b.kl for b in batches) / len(batches), full.kl, rtol=1e-6)
    # and each minibatch NLL is N/B times its own sum, not a mean
    b0 = batches[0]
    direct = -torch.distributions.Categorical(logits=poutine.replay(model, trace=poutine.trace(fixed).get_trace())(
        x[:60])).log_prob(y[:60]).sum() * len(x) / 60
    assert_close(b0.nll, direct, rtol=1e-5)


@pytest.mark.parametrize("kl, pyro_elbo", [("analytic", TraceMeanField_ELBO), ("mc", Trace_ELBO)])
def test_terms_equal_pyros_elbo_given_the_same_noise(small_digits, kl, pyro_elbo):
    x, y = small_digits[0].tensors
    model = small_mlp(num_data=1437)
    guide = spread_guide(model, x[:64], y[:64], spread=0.3)
    pyro.set_rng_seed(3)
    expected = pyro_elbo().differentiable_loss(model, guide, x[:64], y[:64])
    pyro.set_rng_seed(3)
    terms = elbo_terms(model, guide, x[:64], y[:64], kl=kl)
    assert_close(terms.loss, expected, rtol=1e-5)
    assert_close(terms.loss, terms.nll + terms.kl)
    assert terms.mc_sites == ()


def test_analytic_kl_is_the_closed_form_of_every_scalar_weight(small_digits):
    x, y = small_digits[0].tensors
    model = small_mlp()
    guide = spread_guide(model, x, y, spread=0.3)
    terms = elbo_terms(model, guide, x, y, kl="analytic")
    total = 0.0
    for name in terms.kl_sites:
        q = torch.distributions.Normal(*guide.loc_and_scale(name))
        expected = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum()
        m, s = q.loc, q.scale
        formula = (torch.log(1.0 / s) + (s**2 + m**2) / 2 - 0.5).sum()
        assert_close(terms.kl_sites[name], expected, rtol=1e-5)
        assert_close(formula, expected, rtol=1e-5)
        total += expected
    assert_close(terms.kl, total, rtol=1e-5)
    assert set(terms.kl_layers()) == {"net.1", "net.3"}


def test_analytic_loss_does_not_vary_with_the_weights_noise_in_the_kl(small_digits):
    x, y = small_digits[0].tensors
    model = small_mlp()
    guide = spread_guide(model, x, y, spread=0.3)
    kls = torch.stack([elbo_terms(model, guide, x, y, kl="analytic").kl for _ in range(5)])
    mcs = torch.stack([elbo_terms(model, guide, x, y, kl="mc").kl for _ in range(5)])
    assert float(kls.std()) == 0.0
    assert float(mcs.std()) > 1.0


def test_pyros_own_autonormal_only_gets_a_sampled_kl(small_digits):
    """The pitfall MeanFieldNormal exists for: AutoNormal puts a Delta at the model's site."""
    x, y = small_digits[0].tensors
    model = small_mlp()
    guide = AutoNormal(model, init_scale=0.05)
    terms = elbo_terms(model, guide, x, y, kl="analytic")
    assert "net.1.weight" in terms.mc_sites and "net.1.weight_unconstrained" in terms.mc_sites
    kls = torch.stack([elbo_terms(model, guide, x, y, kl="analytic").kl for _ in range(5)])
    assert float(kls.std()) > 1.0


def test_monte_carlo_kl_converges_to_the_closed_form(small_digits):
    x, y = small_digits[0].tensors
    model = small_mlp()
    guide = spread_guide(model, x, y, spread=0.3)
    exact = float(elbo_terms(model, guide, x, y, kl="analytic").kl)
    draws = torch.stack([elbo_terms(model, guide, x, y, kl="mc").kl for _ in range(400)]).double()
    stderr = float(draws.std() / 20)
    assert abs(float(draws.mean()) - exact) < 4 * stderr
    assert stderr < 0.01 * abs(exact)


def test_a_conv_kernel_has_the_kl_of_a_dense_matrix_holding_the_same_numbers():
    """No special conv KL: the (C_out, C_in, k, k) kernel's KL is the sum of its scalar weights' KLs."""
    from pyro_bnn import BayesianCNN, BayesianMLP, NormalPrior

    x_img, y = torch.randn(2, 1, 3, 3), torch.tensor([0, 1])
    cnn = BayesianCNN((1, 3, 3), 2, channels=(4,), hidden=(), prior=NormalPrior(0.7))
    mlp = BayesianMLP(9, 4, hidden=(), prior=NormalPrior(0.7))
    g_cnn, g_mlp = auto_normal(cnn), auto_normal(mlp)
    initialize_guide(g_cnn, x_img, y)
    initialize_guide(g_mlp, x_img.reshape(2, 9), y)
    loc, scale = torch.randn(4, 1, 3, 3), torch.rand(4, 1, 3, 3) + 0.1
    with torch.no_grad():
        for guide, name, shape in ((g_cnn, "net.0.weight", (4, 1, 3, 3)), (g_mlp, "net.1.weight", (4, 9))):
            guide_loc, guide_scale = guide.loc_and_scale(name)
            guide_loc.unconstrained().copy_(loc.reshape(shape))
            guide_scale.unconstrained().copy_(biject_to(guide.scale_constraint).inv(scale).reshape(shape))
    conv_kl = elbo_terms(cnn, g_cnn, x_img, y).kl_sites["net.0.weight"]
    dense_kl = elbo_terms(mlp, g_mlp, x_img.reshape(2, 9), y).kl_sites["net.1.weight"]
    per_scalar = torch.distributions.kl_divergence(torch.distributions.Normal(loc, scale),
                                                   torch.distributions.Normal(0.0, 0.7))
    assert per_scalar.shape == (4, 1, 3, 3)
    assert_close(conv_kl, per_scalar.sum(), rtol=1e-5)
    assert_close(dense_kl, conv_kl, rtol=1e-6)


def test_pyros_trace_elbo_equals_the_monte_carlo_decomposition_in_expectation(small_digits):
    x, y = small_digits[0].tensors
    model = small_mlp()
    guide = spread_guide(model, x, y, spread=0.3)
    with torch.no_grad():
        pyro_losses = torch.stack([torch.as_tensor(Trace_ELBO().loss(model, guide, x, y)) for _ in range(300)])
        closed = elbo_terms(model, guide, x, y, kl="analytic")
        nll = torch.stack([elbo_terms(model, guide, x, y, kl="analytic").nll for _ in range(300)])
    expected = nll.double().mean() + closed.kl.double()
    stderr = float((pyro_losses.double().var() / 300 + nll.double().var() / 300).sqrt())
    assert abs(float(pyro_losses.double().mean() - expected)) < 4 * stderr


def test_per_example_terms_are_tfps_units():
    """TFP's ``mean NLL + KL / N``: each term divided by N, the loss their sum."""
    from pyro_bnn import ElboTerms

    terms = ElboTerms(nll=torch.tensor(300.0), kl=torch.tensor(60.0), kl_sites={}, num_data=150)
    assert terms.per_example() == {"nll": 2.0, "kl": 0.4, "loss": pytest.approx(2.4)}
