"""Converting an existing torch.nn.Module into a Bayesian model."""

import warnings

import pyro
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pyro_bnn import (
    Gaussian,
    MeanFieldELBO,
    NormalPrior,
    Schedule,
    auto_normal,
    fit,
    make_loader,
    pretrained_weights,
    to_bayesian,
)
from pyro_bnn.evaluation.predictive import predict
from pyro_bnn.objectives.estimators import describe_layers


class SmallNet(nn.Module):
    """A user's own architecture: conv, a residual dense block written in forward, a norm layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.LayerNorm(64)
        self.hidden = nn.Linear(64, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv(x)), 2).flatten(1)
        h = self.norm(h)
        return self.out(h + F.relu(self.hidden(h)))


def test_every_linear_and_conv_parameter_becomes_a_site_with_the_prior_and_the_module_is_untouched(small_digits):
    net = SmallNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = to_bayesian(net, in_shape=(1, 8, 8), prior=NormalPrior(0.5), num_data=300)
    x, y = small_digits[0].tensors
    trace = pyro.poutine.trace(model).get_trace(x[:8], y[:8])
    sites = {n: s for n, s in trace.nodes.items() if s["type"] == "sample" and not s["is_observed"]
             and n != "data"}
    assert set(sites) == {f"net.{layer}.{p}" for layer in ("conv", "hidden", "out") for p in ("weight", "bias")}
    for name, site in sites.items():
        assert torch.all(site["fn"].base_dist.scale == 0.5) and site["value"].shape == before[name[4:]].shape
    point_estimates = {"net.norm.weight_unconstrained", "net.norm.bias_unconstrained"}  # PyroParams
    assert {n for n, _ in model.named_parameters()} == point_estimates
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert all(isinstance(p, nn.Parameter) for p in net.parameters()) and type(net) is SmallNet


def test_guide_means_start_at_the_trained_weights_and_training_runs(small_digits):
    net = SmallNet()
    x, y = small_digits[0].tensors
    model = to_bayesian(net, in_shape=(1, 8, 8), num_data=300)
    guide = auto_normal(model, init_scale=1e-6, init_loc=pretrained_weights(net))
    guide(x[:8], y[:8])
    for name, value in pretrained_weights(net).items():
        assert torch.equal(guide.loc_and_scale(name)[0].detach(), value), name
    outputs, _ = predict(model, guide, make_loader(small_digits[1], 100), num_samples=3)
    torch.testing.assert_close(outputs, net(small_digits[1].tensors[0]).detach().expand(3, -1, -1), atol=1e-3, rtol=0)
    fit(model, guide, make_loader(small_digits[0], 50, shuffle=True), Schedule(epochs=2, lr=1e-3))
    assert not torch.equal(model.net.norm.weight.detach(), torch.ones(64))  # the point-estimate parameters train too
    assert not torch.equal(guide.loc_and_scale("net.out.weight")[0].detach(), pretrained_weights(net)["net.out.weight"])


def test_a_module_without_linear_or_conv_layers_is_refused():
    with pytest.raises(ValueError, match="has no Linear or Conv layer"):
        to_bayesian(nn.Sequential(nn.ReLU()), in_shape=(4,))


def test_pretrained_weights_of_another_network_are_refused(small_digits):
    model = to_bayesian(SmallNet(), in_shape=(1, 8, 8), num_data=300)
    wrong = pretrained_weights(nn.Sequential())  # empty: fine, falls back to the PyTorch init
    assert wrong == {}
    other = {"net.out.weight": torch.zeros(3, 3)}
    guide = auto_normal(model, init_loc=other)
    with pytest.raises(ValueError, match=r"net.out.weight has shape \(3, 3\), the site has \(10, 64\)"):
        guide(*[t[:4] for t in small_digits[0].tensors])


def test_layers_that_stay_point_estimates_are_named_at_conversion_and_each_layer_s_estimator_is_logged(caplog):
    """ConvTranspose (and any other parameterised layer but normalisation) keeps point estimates: said at
    conversion; fit logs which layers are Bayesian and the estimator each gets (convolutions of any
    dimension are routed through the estimator)."""
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2), nn.ReLU(), nn.ConvTranspose1d(2, 1, 3), nn.Flatten(),
                        nn.Linear(8, 1))
    with pytest.warns(UserWarning, match=r"net.3 \(ConvTranspose1d\) keep point-estimate parameters") as warned:
        model = to_bayesian(net, (1, 8), likelihood=Gaussian(), num_data=16)
    assert "BatchNorm" not in str(warned[0].message)  # normalisation layers are point estimates by design
    assert describe_layers(model, "dense_local_reparameterization") == (
        "Bayesian layers: net.0 Conv1d (shared), net.5 Linear (local_reparameterization); "
        "point estimates: net.1 BatchNorm1d, net.3 ConvTranspose1d (11 numbers)")
    data = torch.utils.data.TensorDataset(torch.randn(16, 1, 8), torch.randn(16))
    with caplog.at_level("INFO", logger="pyro_bnn.training.step"):
        fit(model, auto_normal(model), make_loader(data, 8), Schedule(epochs=1), MeanFieldELBO(estimator="flipout"))
    assert "Bayesian layers: net.0 Conv1d (flipout), net.5 Linear (flipout)" in caplog.text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_bayesian(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)), (3,))  # nothing to say
