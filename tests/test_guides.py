"""Guides: each builder's parameters after initialisation, their starting values."""

import pytest
import torch

from helpers import small_mlp
from pyro_bnn import MeanFieldNormal, auto_delta, auto_lowrank, auto_normal, initialize_guide


def data():
    return torch.randn(5, 1, 8, 8), torch.zeros(5, dtype=torch.long)


def test_initialize_guide_creates_the_parameters_of_every_site():
    model = small_mlp()
    guide = auto_normal(model)
    assert guide.prototype_trace is None
    assert initialize_guide(guide, *data()) is guide
    sites = [name for name, _ in guide.prototype_trace.iter_stochastic_nodes()]
    assert sites == ["net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias"]


def test_auto_normal_starts_at_its_init_scale_around_the_pytorch_init():
    model = small_mlp()
    guide = initialize_guide(auto_normal(model, init_scale=0.02), *data())
    assert isinstance(guide, MeanFieldNormal)
    for name in ("net.1.weight", "net.3.bias"):
        torch.testing.assert_close(guide.scales.get_parameter(name + "_unconstrained").exp(),
                                   torch.full_like(guide.locs.get_parameter(name + "_unconstrained"), 0.02))


def test_init_loc_values_start_the_guide_there():
    model = small_mlp()
    guide = initialize_guide(auto_delta(model, init_loc={"net.1.bias": torch.full((16,), 0.5)}), *data())
    torch.testing.assert_close(guide.median()["net.1.bias"], torch.full((16,), 0.5))


def test_auto_lowrank_has_its_rank():
    model = small_mlp()
    guide = initialize_guide(auto_lowrank(model, rank=3), *data())
    assert guide.cov_factor.shape[-1] == 3


@pytest.mark.parametrize("builder", [auto_normal, auto_delta, auto_lowrank])
def test_every_guide_builds_and_runs(builder):
    model = small_mlp()
    guide = initialize_guide(builder(model), *data())
    assert set(guide(*data())) == {"net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias"}


def test_the_mean_field_protocol_is_the_guides_loc_and_scale():
    from pyro_bnn import is_mean_field

    model = small_mlp()
    assert is_mean_field(auto_normal(model))
    assert not is_mean_field(auto_delta(model)) and not is_mean_field(auto_lowrank(model))
