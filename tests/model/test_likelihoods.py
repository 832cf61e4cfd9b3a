"""Likelihoods: the NLL in whole-data units, the heteroscedastic scale's floor, the output sizes."""

import pytest
import torch

from pyro_bnn import Categorical, Gaussian, HeteroscedasticGaussian
from pyro_bnn.metrics import classification_metrics, in_original_units, regression_metrics


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


@pytest.mark.parametrize("likelihood, outputs", [(Gaussian, 1), (HeteroscedasticGaussian, 2)])
def test_each_regression_likelihood_asks_for_its_outputs(likelihood, outputs):
    assert likelihood().output_size(1) == outputs


def test_a_likelihood_scores_its_own_predictive():
    """The task's metrics, OOD scores and units belong to the likelihood: a classifier's are those of its class
    probabilities, a regression model's those of the mixture of its draws' Normals."""
    logits, classes = torch.randn(5, 7, 3), torch.randint(0, 3, (7,))
    assert Categorical().metrics(logits, classes) == classification_metrics(logits.softmax(-1), classes)
    assert set(Categorical.metric_names) <= set(Categorical().metrics(logits, classes))
    assert set(Categorical().ood_metrics(logits, torch.randn(5, 4, 3))) >= set(Categorical.ood_metric_names)
    outputs, targets = torch.randn(5, 7, 2), torch.randn(7)
    likelihood = HeteroscedasticGaussian(0.01)
    loc, scale = likelihood.loc_scale(outputs)
    assert likelihood.metrics(outputs, targets) == regression_metrics(loc, scale, targets)
    assert set(HeteroscedasticGaussian.metric_names) <= set(likelihood.metrics(outputs, targets))
    metrics = likelihood.metrics(outputs, targets)
    assert likelihood.in_original_units(metrics, 3.0) == in_original_units(metrics, 3.0)
    assert Categorical().in_original_units({"nll": 0.5}, 3.0) == {"nll": 0.5}
    with pytest.raises(ValueError, match="out-of-distribution metrics are defined for classifiers"):
        likelihood.ood_metrics(outputs, outputs)


def test_the_predictive_summary_is_the_mixtures_mean_and_sd():
    outputs = torch.randn(50, 6, 2)
    likelihood = HeteroscedasticGaussian(0.01)
    loc, scale = (t.double() for t in likelihood.loc_scale(outputs))
    summary = likelihood.summary(outputs)
    torch.testing.assert_close(summary["mean"], loc.mean(0))
    torch.testing.assert_close(summary["std"] ** 2, loc.var(0, unbiased=False) + scale.pow(2).mean(0))
    torch.testing.assert_close(summary["std"] ** 2, summary["aleatoric_std"] ** 2 + summary["epistemic_std"] ** 2)
    probs = Categorical().summary(torch.randn(50, 6, 3))
    assert probs["probs"].shape == (6, 3) and bool((probs["mutual_information"] >= 0).all())


def test_a_learned_noise_scale_is_a_point_estimate_of_the_likelihood():
    learned, fixed = Gaussian(0.5), Gaussian(0.5, learn_scale=False)
    assert [n for n, _ in learned.named_parameters()] == ["scale_unconstrained"]
    assert list(fixed.parameters()) == [] and float(fixed.scale) == 0.5
