"""Library calls with bad data or arguments: one error naming the argument and the fix, before any work."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import small_mlp
from pyro_bnn import (
    BayesianMLP,
    Gaussian,
    KLWeight,
    MeanFieldELBO,
    MeanFieldNormal,
    Schedule,
    auto_normal,
    fit,
    make_loader,
    to_bayesian,
)
from pyro_bnn.batch_checks import check_batch, check_loader, first_batch


def digits_loader(small_digits, x=None, y=None, batch_size=50):
    tx, ty = small_digits[0].tensors
    return make_loader(TensorDataset(tx[:100] if x is None else x, ty[:100] if y is None else y), batch_size)


def fit_once(loader, schedule=None):
    model = small_mlp()
    guide = auto_normal(model)
    return fit(model, guide, loader, schedule or Schedule(epochs=1)), guide


@pytest.mark.parametrize("make, error, message", [  # (the cases of tests/bad_inputs.py are tested there)
    (lambda d: digits_loader(d, y=d[0].tensors[1][:100].float()), TypeError, "need integer class indices (y.long())"),
    (lambda d: [d[0].tensors[0][:10]], TypeError, "loader must yield pairs (x, y) of tensors, got a Tensor"),
])
def test_bad_data_is_named_before_training(small_digits, make, error, message):
    model = small_mlp()
    guide = auto_normal(model)
    with pytest.raises(error) as info:
        fit(model, guide, make(small_digits), Schedule(epochs=1))
    assert message.replace("need integer", "needs integer") in str(info.value).replace("need integer", "needs integer")
    assert guide.prototype_trace is None  # nothing was set up, let alone trained


def test_bad_regression_targets_are_named(small_digits):
    x = torch.randn(20, 3)
    model = BayesianMLP(3, 1, hidden=(4,), likelihood=Gaussian(0.1), num_data=20)
    with pytest.raises(TypeError, match=r"the targets y of loader have dtype torch.int64: a regression model needs "
                                        r"real-valued targets \(y.float\(\)\)"):
        fit(model, auto_normal(model), make_loader(TensorDataset(x, torch.arange(20)), 10), Schedule(epochs=1))
    with pytest.raises(ValueError, match="the targets y of loader hold NaN or inf values"):
        fit(model, auto_normal(model), make_loader(TensorDataset(x, torch.full((20,), float("nan"))), 10),
            Schedule(epochs=1))


@pytest.mark.parametrize("build, message", [
    (lambda: MeanFieldELBO(num_particles=1.5), "num_particles=1.5: use an integer >= 1"),
    (lambda: Schedule(epochs=0), "epochs=0: use an integer >= 1"),
    (lambda: Schedule(lr=float("nan")), "lr=nan: use a finite number > 0"),
    (lambda: fit(small_mlp(), auto_normal(small_mlp()), [], schedule=10), "schedule=10: pass a Schedule"),
])
def test_bad_arguments_are_named(build, message):
    with pytest.raises((ValueError, TypeError)) as info:
        build()
    assert message in str(info.value)


def test_a_number_is_a_constant_kl_weight(small_digits):
    pyro.set_rng_seed(0)
    history, _ = fit_once(digits_loader(small_digits), Schedule(epochs=1, kl_weight=0.5))
    pyro.set_rng_seed(0)
    expected, _ = fit_once(digits_loader(small_digits), Schedule(epochs=1, kl_weight=KLWeight(0.5)))
    assert [r["loss"] for r in history] == [r["loss"] for r in expected] and history[0]["kl_weight"] == 0.5


def test_a_list_of_batches_is_a_loader(small_digits):
    x, y = small_digits[0].tensors
    history, _ = fit_once([(x[:50], y[:50]), (x[50:100], y[50:100])])
    assert len(history) == 1 and history[0]["loss"] > 0


def test_the_checks_draw_nothing_from_torchs_random_state(small_digits):
    """A seeded run gives the numbers it gave before the checks existed: they consume no random numbers."""
    loader = DataLoader(small_digits[0], batch_size=50, shuffle=True)  # its iterator would draw a seed
    model = small_mlp()
    x, y = first_batch([small_digits[0].tensors])
    before = torch.get_rng_state()
    check_loader(loader)
    check_batch(model, x, y)  # runs the network once, on prior draws
    assert torch.equal(before, torch.get_rng_state())


def test_the_guide_skips_the_jacobian_of_masked_constrained_sites():
    """Pyro's AutoNormal branch kept by MeanFieldNormal: under poutine.mask(mask=False) the Delta at a
    constrained site carries no log-density (so a masked site adds nothing to the ELBO)."""
    import pyro.distributions as dist

    def model():
        pyro.sample("s", dist.LogNormal(0.0, 1.0))
        pyro.sample("w", dist.Normal(0.0, 1.0))

    guide = MeanFieldNormal(model, init_scale=0.5)
    guide()
    trace = poutine.trace(guide).get_trace()
    assert float(trace.nodes["s"]["fn"].log_density.detach()) != 0.0  # the Jacobian of exp, unmasked
    with poutine.mask(mask=False):
        masked = poutine.trace(guide).get_trace()
    assert float(masked.nodes["s"]["fn"].log_density) == 0.0
    assert masked.nodes["w"]["fn"].__class__.__name__ == "Normal"  # real sites: the Normal at the site
    with poutine.mask(mask=False):
        assert float(Trace_ELBO().differentiable_loss(model, guide)) == 0.0


def test_the_first_batch_check_changes_nothing_and_fits_a_batchnorm_resnet():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(num_classes=10)
    model = to_bayesian(net, (3, 16, 16), num_data=8)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_batch(model, x, y)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm's running statistics included
    assert model.training and all(m.training for m in model.modules())
    history = fit(model, auto_normal(model, init_scale=1e-3), make_loader(TensorDataset(x, y), 2), Schedule(epochs=1))
    assert len(history) == 1 and math.isfinite(history[0]["loss"])


class TokenClassifier(nn.Module):
    """Embedding then LSTM over 5 integer tokens: the network takes indices, not floats."""

    def __init__(self):
        super().__init__()
        self.embed, self.lstm, self.out = nn.Embedding(20, 4), nn.LSTM(4, 6, batch_first=True), nn.Linear(6, 3)

    def forward(self, tokens):
        hidden, _ = self.lstm(self.embed(tokens))
        return self.out(hidden[:, -1])


def test_integer_inputs_of_a_network_that_embeds_them_are_accepted():
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randint(0, 20, (32, 5), generator=g), torch.randint(0, 3, (32,), generator=g))
    with pytest.warns(UserWarning, match="keep point-estimate parameters"):  # the embedding and the LSTM
        model = to_bayesian(TokenClassifier(), (5,), num_data=32)
    history = fit(model, auto_normal(model), make_loader(data, 16), Schedule(epochs=2))
    assert math.isfinite(history[-1]["loss"])
    with pytest.raises(TypeError, match="have dtype torch.int64, the model's weights torch.float32"):
        mlp = to_bayesian(nn.Sequential(nn.Linear(5, 3)), (5,), num_data=32)
        fit(mlp, auto_normal(mlp), make_loader(data, 16), Schedule(epochs=1))  # no embedding: integers are a dtype error
