"""Likelihoods: the NLL in whole-data units, the heteroscedastic scale's floor, the output sizes."""

import pytest
import torch

from pyro_bnn import Categorical, Gaussian, HeteroscedasticGaussian
from pyro_bnn.model.likelihoods import REGRESSION_LIKELIHOODS


def test_the_log_likelihood_is_the_batch_sum_scaled_to_the_whole_data():
    outputs, y = torch.randn(4, 1), torch.randn(4)
    expected = torch.distributions.Normal(outputs[:, 0], 0.5).log_prob(y).sum() * 100 / 4
    torch.testing.assert_close(Gaussian(0.5, learn_scale=False).log_likelihood(outputs, y, 100), expected)


def test_categorical_is_the_cross_entropy():
    logits, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    expected = -torch.nn.functional.cross_entropy(logits, y, reduction="sum")
    torch.testing.assert_close(Categorical().log_likelihood(logits, y, 6), expected)


def test_the_heteroscedastic_sd_is_the_floor_plus_a_softplus():
    outputs = torch.tensor([[0.3, -50.0], [1.0, 0.0], [2.0, 3.0]])
    loc, scale = HeteroscedasticGaussian(0.01).loc_scale(outputs)
    torch.testing.assert_close(loc, outputs[:, 0])
    torch.testing.assert_close(scale, 0.01 + torch.nn.functional.softplus(outputs[:, 1]))
    assert bool((scale >= torch.tensor(0.01)).all())


@pytest.mark.parametrize("name, outputs", [("gaussian", 1), ("heteroscedastic", 2)])
def test_each_regression_likelihood_asks_for_its_outputs(name, outputs):
    assert REGRESSION_LIKELIHOODS[name]().output_size(1) == outputs


def test_a_learned_noise_scale_is_a_point_estimate_of_the_likelihood():
    learned, fixed = Gaussian(0.5), Gaussian(0.5, learn_scale=False)
    assert [n for n, _ in learned.named_parameters()] == ["scale_unconstrained"]
    assert list(fixed.parameters()) == [] and float(fixed.scale) == 0.5
