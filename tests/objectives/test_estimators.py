"""Local reparameterization (everywhere, or in dense layers only) and Flipout: same distribution per example,
lower gradient variance."""

from contextlib import nullcontext

import pyro
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from helpers import small_mlp
from pyro_bnn import (
    Gaussian,
    MeanFieldELBO,
    Schedule,
    auto_normal,
    elbo_terms,
    fit,
    initialize_guide,
    make_loader,
    to_bayesian,
)
from pyro_bnn.guides import auto_delta, auto_lowrank
from pyro_bnn.objectives.estimators import DenseLocalReparameterization, Flipout, LocalReparameterization, estimator_handler

HANDLERS = [LocalReparameterization, DenseLocalReparameterization, Flipout]


def layer_outputs(model, handler, x, y, guide, draws):
    """``draws`` outputs of ``model.net`` for the inputs ``x``, under ``handler`` (None: one shared draw each)."""
    outs = []
    for _ in range(draws):
        with handler() if handler else torch.no_grad():
            guide_trace = pyro.poutine.trace(guide).get_trace(x, y)
            outs.append(pyro.poutine.replay(model.net, trace=guide_trace)(x).detach())
    return torch.stack(outs)


@pytest.mark.parametrize("layer, x, op", [
    (nn.Linear(5, 3), torch.randn(4, 5), F.linear),
    (nn.Conv2d(2, 3, 3, padding=1), torch.randn(4, 2, 5, 5), lambda x, w, b: F.conv2d(x, w, b, padding=1)),
    (nn.Conv1d(2, 3, 3), torch.randn(4, 2, 6), F.conv1d),
    (nn.Conv3d(2, 2, 2), torch.randn(4, 2, 3, 3, 3), F.conv3d),
], ids=["linear", "conv2d", "conv1d", "conv3d"])
@pytest.mark.parametrize("handler", HANDLERS)
def test_every_output_has_the_marginal_of_a_shared_weight_draw(layer, x, op, handler):
    """Under W ~ N(M, S^2), b ~ N(m, s^2) each output is N(op(x, M, m), op(x^2, S^2, s^2)), as with one shared draw."""
    model = to_bayesian(nn.Sequential(layer, nn.Flatten()), in_shape=x.shape[1:], num_data=4)
    guide = auto_normal(model, init_scale=0.5)
    y = torch.zeros(len(x), dtype=torch.long)
    initialize_guide(guide, x, y)
    (m, s), (mb, sb) = (tuple(t.detach() for t in guide.loc_and_scale(f"net.0.{p}")) for p in ("weight", "bias"))
    mean, variance = op(x, m, mb).flatten(1), op(x * x, s * s, sb * sb).flatten(1)
    # replicas of an example in one batch get their own noise; Flipout's replicas share one weight draw
    # (uncorrelated, not independent), as do a conv's under the dense variant, so those need many draws, and
    # their errors are counted per draw
    replicas, draws = (2000, 10) if handler is LocalReparameterization else (5, 4000)
    out = layer_outputs(model, handler, x.repeat(replicas, *[1] * (x.dim() - 1)), y.repeat(replicas), guide, draws)
    out = out.reshape(draws * replicas, *mean.shape)
    n = len(out) if handler is LocalReparameterization else draws
    # standardised Monte Carlo errors: below 4.5 standard errors for every one of the outputs
    z_mean = (out.mean(0) - mean) / (variance / n).sqrt()
    z_var = (out.var(0) / variance - 1) / (2 / n) ** 0.5
    assert z_mean.abs().max() < 4.5 and z_var.abs().max() < 4.5, (z_mean.abs().max(), z_var.abs().max())


def test_noise_differs_between_examples_and_other_layers_are_left_alone():
    model = to_bayesian(nn.Sequential(nn.Linear(3, 2)), in_shape=(3,), num_data=2)
    guide = auto_normal(model, init_scale=0.3)
    x = torch.ones(2, 3)  # two identical examples: one shared draw gives them identical outputs
    y = torch.zeros(2, dtype=torch.long)
    initialize_guide(guide, x, y)
    for handler in HANDLERS:
        out = layer_outputs(model, handler, x, y, guide, 1)[0]
        assert not torch.allclose(out[0], out[1])
    assert torch.equal(*layer_outputs(model, None, x, y, guide, 1)[0])
    plain = nn.Linear(3, 2)
    with LocalReparameterization():
        torch.testing.assert_close(plain(x), x @ plain.weight.T + plain.bias)  # a plain layer: untouched


def conv_dense_pair(x, y):
    """A conv layer then a dense layer over 1x3x3 inputs, and its mean-field guide (sd 0.3), run on ``(x, y)``."""
    model = to_bayesian(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(18, 2)), in_shape=(1, 3, 3),
                        num_data=len(x))
    guide = auto_normal(model, init_scale=0.3)
    initialize_guide(guide, x, y)
    return model, guide


def test_the_dense_variant_keeps_one_weight_draw_per_minibatch_in_conv_layers():
    """Two identical examples: one shared draw gives them identical conv outputs; the dense layer after it
    draws each example's pre-activations."""
    x, y = torch.ones(2, 1, 3, 3), torch.zeros(2, dtype=torch.long)
    model, guide = conv_dense_pair(x, y)
    seen = []
    hook = model.net[0].register_forward_hook(lambda module, args, out: seen.append(out))
    outputs = {}
    for handler in (LocalReparameterization, DenseLocalReparameterization):
        with handler(), torch.no_grad():
            out = pyro.poutine.replay(model.net, trace=pyro.poutine.trace(guide).get_trace(x, y))(x)
        outputs[handler] = seen.pop(), out
    hook.remove()
    (conv_lrt, out_lrt), (conv_dense, out_dense) = outputs.values()
    assert torch.equal(conv_dense[0], conv_dense[1]) and not torch.allclose(conv_lrt[0], conv_lrt[1])
    assert not torch.allclose(out_dense[0], out_dense[1]) and not torch.allclose(out_lrt[0], out_lrt[1])


@pytest.mark.parametrize("make_guide", [auto_delta, auto_lowrank], ids=["auto_delta", "auto_lowrank"])
@pytest.mark.parametrize("handler", HANDLERS)
def test_guides_that_draw_no_normal_weights_train_as_with_one_shared_draw(small_digits, make_guide, handler):
    """The model's Normal prior sees the guide's point (or joint draw) again: that is no Normal draw to
    reparameterize, so the loss is the one without a handler (not that of weights drawn from the prior)."""
    x, y = (t[:32] for t in small_digits[0].tensors)
    model = small_mlp(num_data=1437)
    guide = make_guide(model)
    initialize_guide(guide, x, y)
    losses = []
    for active in (handler(), None):
        pyro.set_rng_seed(0)
        with active if active is not None else nullcontext(), torch.no_grad():
            losses.append(elbo_terms(model, guide, x, y).loss)
    assert torch.equal(*losses)


def gradient_variance(model, guide, x, y, estimator, repeats):
    """Variance over ``repeats`` loss evaluations of d loss / d (guide locations of the output layer)."""
    grads, site = [], "net.3.weight"
    params = dict(guide.named_parameters())
    for _ in range(repeats):
        guide.zero_grad(set_to_none=True)
        if estimator == "separate":  # one independent weight draw per example (the costly reference)
            loss = sum(elbo_terms(model, guide, x[i:i + 1], y[i:i + 1]).loss for i in range(len(x))) / len(x)
        else:
            handler = estimator_handler(estimator)
            with handler if handler is not None else torch.enable_grad():
                loss = elbo_terms(model, guide, x, y).loss
        loss.backward()
        grads.append(params[f"locs.{site}_unconstrained"].grad.clone())
    return float(torch.stack(grads).var(0).mean())


def test_gradient_variance_ordering_of_kingma_et_al(small_digits):
    """Kingma et al. 2015, Table 1: local reparameterization < separate weight samples < one shared sample."""
    x, y = (t[:32] for t in small_digits[0].tensors)
    model = small_mlp(num_data=1437, hidden=(50,))
    guide = auto_normal(model, init_scale=0.1)
    initialize_guide(guide, x, y)
    variance = {name: gradient_variance(model, guide, x, y, name, 60)
                for name in ("shared", "separate", "local_reparameterization", "flipout")}
    assert variance["local_reparameterization"] < variance["separate"] < variance["shared"], variance
    assert variance["flipout"] < 0.5 * variance["shared"], variance


@pytest.mark.parametrize("estimator", ["local_reparameterization", "dense_local_reparameterization", "flipout"])
def test_fit_trains_with_each_estimator(small_digits, estimator):
    model = small_mlp()
    guide = auto_normal(model, init_scale=1e-2)
    history = fit(model, guide, make_loader(small_digits[0], 50, shuffle=True), Schedule(epochs=5, lr=1e-2),
                  MeanFieldELBO(estimator=estimator))
    assert history[-1]["loss"] < history[0]["loss"]


def test_unknown_estimator_is_named():
    with pytest.raises(ValueError, match="estimator='dropout' is not known"):
        estimator_handler("dropout")


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_part_of_a_batch_gets_the_noise_its_rows_get_in_the_whole_batch(handler):
    """A distributed rank holding rows 3..7 of an 8-example batch (``rows = (3, 8)``) draws what they get in one process."""
    x, y = torch.randn(8, 1, 3, 3), torch.zeros(8, dtype=torch.long)
    model, guide = conv_dense_pair(x, y)
    outputs = []
    for rows, part in ((None, slice(None)), ((3, 8), slice(3, 8))):
        pyro.set_rng_seed(0)
        with handler().for_rows(rows), torch.no_grad():
            guide_trace = pyro.poutine.trace(guide).get_trace(x[part], y[part])
            outputs.append(pyro.poutine.replay(model.net, trace=guide_trace)(x[part]))
    torch.testing.assert_close(outputs[1], outputs[0][3:])


class CalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, x):
        return self.fc(x) - self.fc(x)


@pytest.mark.parametrize("estimator", ["local_reparameterization", "dense_local_reparameterization", "flipout"])
def test_a_layer_called_twice_in_one_pass_is_refused_where_each_call_would_draw_its_own_noise(estimator):
    model = to_bayesian(CalledTwice(), in_shape=(3,), num_data=4, likelihood=Gaussian())
    guide = auto_normal(model, init_scale=0.1)
    x, y = torch.randn(4, 3), torch.randn(4)
    initialize_guide(guide, x, y)
    with pytest.raises(ValueError, match=f"the Bayesian layer net.fc is called twice in one forward pass: under "
                                         f"estimator={estimator}"):
        with estimator_handler(estimator):
            elbo_terms(model, guide, x, y)
    with pytest.raises(ValueError, match="is called twice in one forward pass"):  # the fused step's path too
        fit(model, guide, make_loader(TensorDataset(x, y), 4), Schedule(epochs=1), MeanFieldELBO(estimator=estimator))
    assert torch.isfinite(elbo_terms(model, guide, x, y).loss)  # one shared draw: both calls see the same weights


def test_the_estimators_leave_torch_as_it_is():
    """A handler computes a Bayesian layer's output from the layer's own message: no function of torch is replaced,
    while a handler is active or after."""
    model = to_bayesian(nn.Sequential(nn.Linear(3, 2)), in_shape=(3,), num_data=2)
    guide = auto_normal(model, init_scale=0.3)
    x, y = torch.ones(2, 3), torch.zeros(2, dtype=torch.long)
    initialize_guide(guide, x, y)
    functions = {name: getattr(F, name) for name in dir(F) if callable(getattr(F, name))}
    for handler in HANDLERS:
        with handler():
            elbo_terms(model, guide, x, y)
            assert {name: getattr(F, name) for name in functions} == functions
    assert {name: getattr(F, name) for name in functions} == functions
