"""Priors: the distribution each site gets (family, scale per layer, fan-in), which layers get one, and the helpers
that read a site's prior back."""

import math

import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_bnn import BayesianMLP, LaplacePrior, NormalPrior, StudentTPrior
from pyro_bnn.model.priors import normal_params, select_layers, site_prior


def mlp(prior):
    return BayesianMLP(4, 3, hidden=(5,), prior=prior, num_data=10)


@pytest.mark.parametrize("prior, expected", [
    (NormalPrior(0.7, loc=0.2), dist.Normal(0.2, 0.7)),
    (LaplacePrior(0.5), dist.Laplace(0.0, 0.5)),
    (StudentTPrior(2.0, df=4.0), dist.StudentT(4.0, 0.0, 2.0)),
])
def test_every_weight_gets_its_familys_density(prior, expected):
    model = mlp(prior)
    weights = torch.linspace(-3, 3, 15).reshape(3, 5)  # net.3: 5 -> 3
    fn = site_prior(model, "net.3.weight")
    torch.testing.assert_close(fn.log_prob(weights).sum(), expected.log_prob(weights).sum())


def test_layer_scales_and_fan_in_set_each_layers_scale():
    model = mlp(NormalPrior(2.0, layer_scales={"net.3": 0.3}, fan_in=True))
    _, first = normal_params(site_prior(model, "net.1.weight"))
    _, last = normal_params(site_prior(model, "net.3.bias"))
    assert float(first.reshape(-1)[0]) == pytest.approx(2.0 / math.sqrt(4))  # scale / sqrt(in_features)
    assert float(last.reshape(-1)[0]) == pytest.approx(0.3 / math.sqrt(5))


def test_normal_params_reads_a_normal_through_independent_and_nothing_else():
    loc, scale = torch.zeros(3), torch.ones(3)
    found = normal_params(dist.Normal(loc, scale).to_event(1))
    assert found[0] is loc and found[1] is scale
    assert normal_params(dist.Laplace(loc, scale)) is None


@pytest.mark.parametrize("bayesian, expected", [
    ("all", ["0", "2", "4"]),
    ("last", ["4"]),
    (["0", "4"], ["0", "4"]),
    (lambda name, module: module.out_features > 3, ["0", "2"]),
])
def test_select_layers_takes_every_form(bayesian, expected):
    network = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 1))
    assert select_layers(network, bayesian) == expected
