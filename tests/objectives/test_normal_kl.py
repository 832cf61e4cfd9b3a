"""The closed-form Normal KL: torch's registered KL per weight, and the same per site from two sums."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from pyro_bnn.objectives.normal_kl import NormalKLPrior, normal_kl, normal_kl_of_sums


@pytest.mark.parametrize("prior_loc, prior_scale", [(0.0, 1.0), (0.3, 0.05), (-2.0, 7.0)])
def test_the_formula_is_torchs_kl_per_weight_and_per_site(prior_loc, prior_scale):
    torch.manual_seed(0)
    loc, scale = torch.randn(5, 4, dtype=torch.float64), torch.rand(5, 4, dtype=torch.float64) + 0.01
    prior = Normal(torch.tensor(prior_loc, dtype=torch.float64), torch.tensor(prior_scale, dtype=torch.float64))
    expected = kl_divergence(Normal(loc, scale), prior)
    assert torch.allclose(normal_kl(loc, scale, prior_loc, prior_scale), expected, rtol=1e-12, atol=1e-12)
    variance = torch.tensor(prior_scale, dtype=torch.float64) ** 2
    site = normal_kl_of_sums(scale.log().sum(), (scale**2 + (loc - prior_loc) ** 2).sum(),
                             NormalKLPrior.of(variance, loc.numel()))
    assert site.item() == pytest.approx(expected.sum().item(), rel=1e-12)


def test_the_inputs_are_left_as_they_were():
    sums, squares = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])
    normal_kl_of_sums(sums, squares, NormalKLPrior.of(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 5.0])))
    assert sums.tolist() == [1.0, 2.0] and squares.tolist() == [3.0, 4.0]
