"""Posterior health: the per-site figures on guides whose answer is known, and the warnings they give."""

import math

import pytest
import torch

from helpers import small_mlp
from pyro_bnn import auto_delta, auto_normal, initialize_guide
from pyro_bnn.evaluation.health import AT_PRIOR_KL, format_health, health_warnings, posterior_health


def guide_for(model, x, y, init_scale=1e-3):
    return initialize_guide(auto_normal(model, init_scale=init_scale), x, y)


def test_a_guide_at_its_initial_scale_has_not_moved(small_digits):
    x, y = (t[:8] for t in small_digits[0].tensors)
    model = small_mlp()
    health = posterior_health(model, guide_for(model, x, y), init_scale=1e-3)
    assert set(health) == {"net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias"}
    for _name, h in health.items():
        assert h["sd_ratio"] == pytest.approx(1.0, rel=1e-5) and h["mean_sd"] == pytest.approx(1e-3, rel=1e-5)
        assert h["at_prior"] == 0.0 and h["snr"] > 1
    assert health["net.1.weight"]["size"] == 64 * 16
    warnings = health_warnings(health)
    assert len(warnings) == 1 and warnings[0].startswith("the posterior has barely moved: its mean sd is 1.00x")
    assert "guide.init_scale" in warnings[0] and "warning: the posterior has barely moved" in format_health(health)


def test_a_guide_equal_to_its_prior_has_collapsed(small_digits):
    x, y = (t[:8] for t in small_digits[0].tensors)
    model = small_mlp(scale=0.5)
    guide = guide_for(model, x, y)
    with torch.no_grad():
        for p in guide.locs.parameters():
            p.zero_()
        for p in guide.scales.parameters():
            p.fill_(math.log(0.5))  # the guide stores log(scale)
    health = posterior_health(model, guide, init_scale=1e-3)
    assert all(h["at_prior"] == 1.0 and h["sd_ratio"] == pytest.approx(500) and h["snr"] == 0 for h in health.values())
    warnings = health_warnings(health)
    assert len(warnings) == 1 and warnings[0].startswith("the posterior has collapsed to the prior: 100.0%")


def test_the_share_at_the_prior_counts_weights_under_the_threshold(small_digits):
    x, y = (t[:8] for t in small_digits[0].tensors)
    model = small_mlp(scale=1.0)
    guide = guide_for(model, x, y)
    with torch.no_grad():
        loc = guide.locs.get_parameter("net.3.weight_unconstrained")
        loc.zero_()
        log_scale = guide.scales.get_parameter("net.3.weight_unconstrained")
        log_scale.zero_()  # at the prior N(0, 1)
        log_scale[:5, :] = math.log(0.5)  # KL per weight log 2 + 1/8 - 1/2 = 0.318 > AT_PRIOR_KL
    share = posterior_health(model, guide, 1e-3)["net.3.weight"]["at_prior"]
    assert 0.318 > AT_PRIOR_KL and share == pytest.approx(1 - 5 * 16 / (10 * 16))


def test_health_is_for_mean_field_guides(small_digits):
    x, y = (t[:8] for t in small_digits[0].tensors)
    model = small_mlp()
    with pytest.raises(TypeError, match="mean-field Normal guide, not a AutoDelta"):
        posterior_health(model, initialize_guide(auto_delta(model), x, y), 1e-3)
