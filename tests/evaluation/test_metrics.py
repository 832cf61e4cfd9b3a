import math

import pytest
import torch

from pyro_bnn import classification_metrics, regression_metrics
from pyro_bnn.metrics import ood_metrics, reliability_bins, uncertainty

PROBS = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
TARGETS = torch.tensor([0, 1, 1, 0])


def binary(p):
    """(1, N, 2) probabilities of one posterior sample with P(class 0) = p."""
    p = torch.tensor(p, dtype=torch.float64)
    return torch.stack([p, 1 - p], -1).unsqueeze(0)


def test_classification_metrics_on_a_hand_made_table():
    m = classification_metrics(PROBS, TARGETS)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.2) + math.log(0.7) + math.log(0.6)) / 4)
    assert m["brier"] == pytest.approx((0.02 + 1.28 + 0.18 + 0.32) / 4)
    # every example alone in its confidence bin: ECE = mean |correct - confidence|
    assert m["ece"] == pytest.approx((0.1 + 0.8 + 0.3 + 0.4) / 4, abs=1e-6)
    assert m["mutual_information"] == pytest.approx(0.0, abs=1e-12)  # a single sample has no epistemic part


def test_ece_averages_within_a_bin_and_weights_bins_by_size():
    # confidences 0.95, 0.97 (one right, one wrong) share a bin; 0.55, 0.55 (both right) share another
    probs = torch.tensor([[0.95, 0.05], [0.97, 0.03], [0.55, 0.45], [0.45, 0.55]])
    targets = torch.tensor([0, 1, 0, 1])
    assert classification_metrics(probs, targets)["ece"] == pytest.approx(0.5 * 0.46 + 0.5 * 0.45, abs=1e-6)
    assert classification_metrics(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))["ece"] == pytest.approx(0.0)


def test_reliability_bins_are_the_bins_of_the_ece():
    probs = torch.softmax(3 * torch.randn(500, 10, generator=torch.Generator().manual_seed(0)), -1)
    targets = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(1))
    bins = reliability_bins(probs, targets)
    filled = bins["count"] > 0
    ece = float((bins["count"][filled] * (bins["accuracy"] - bins["confidence"])[filled].abs()).sum() / 500)
    assert bins["count"].sum() == 500 and len(bins["edges"]) == 16
    assert ece == pytest.approx(classification_metrics(probs, targets)["ece"], abs=1e-6)
    hand = reliability_bins(torch.tensor([[0.95, 0.05], [0.97, 0.03], [0.55, 0.45]]), torch.tensor([0, 1, 0]))
    assert hand["count"][14] == 2 and hand["accuracy"][14] == 0.5 and hand["confidence"][14] == pytest.approx(0.96)
    assert hand["count"][8] == 1 and torch.isnan(hand["accuracy"][0])


def test_entropy_and_mutual_information_of_disagreeing_samples():
    probs = torch.tensor([[[0.9, 0.1]], [[0.1, 0.9]]])  # two posterior samples, one example
    m = classification_metrics(probs, torch.tensor([0]))
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert m["entropy"] == pytest.approx(math.log(2))
    assert m["expected_entropy"] == pytest.approx(h)
    assert m["mutual_information"] == pytest.approx(math.log(2) - h)
    assert m["nll"] == pytest.approx(math.log(2))
    agreeing = uncertainty(torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]]]))  # all aleatoric
    assert agreeing["mutual_information"] == pytest.approx(0.0) and agreeing["entropy"] == pytest.approx(math.log(2))


def test_ood_auroc_counts_the_pairs_that_uncertainty_orders_correctly():
    # entropy grows as P(class 0) goes to 0.5: in-distribution p = 0.99, 0.8; OOD p = 0.85, 0.5
    # pairs (out > in): 0.85 vs 0.99 yes, 0.85 vs 0.8 no, 0.5 vs both yes -> 3 of 4
    m = ood_metrics(binary([0.99, 0.8]), binary([0.85, 0.5]))
    assert m["auroc_entropy"] == pytest.approx(0.75)
    assert m["entropy_out"] > m["entropy_in"]
    assert ood_metrics(binary([0.99, 0.98]), binary([0.6, 0.5]))["auroc_entropy"] == 1.0
    assert ood_metrics(binary([0.6, 0.5]), binary([0.99, 0.98]))["auroc_entropy"] == 0.0
    # mutual information: OOD examples where two posterior samples disagree
    agree = torch.tensor([[[0.7, 0.3]] * 3, [[0.7, 0.3]] * 3])
    disagree = torch.tensor([[[0.9, 0.1]] * 2, [[0.1, 0.9]] * 2])
    m = ood_metrics(agree, disagree)
    assert m["auroc_mutual_information"] == 1.0 and m["mutual_information_in"] == pytest.approx(0.0, abs=1e-12)


def test_regression_metrics_of_a_two_component_mixture():
    m = regression_metrics(torch.tensor([[0.0], [2.0]]), 1.0, torch.tensor([1.0]))
    assert m["rmse"] == pytest.approx(0.0)
    assert m["log_likelihood"] == pytest.approx(-0.5 * math.log(2 * math.pi) - 0.5)
    assert m["predictive_std"] == pytest.approx(math.sqrt(2.0))
    m = regression_metrics(torch.tensor([[0.0, 0.0]]), 0.5, torch.tensor([1.0, -3.0]))
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 9) / 2))


def test_coverage_of_the_central_90_percent_interval():
    # one Normal(0, 1): the interval is +-1.6449
    m = regression_metrics(torch.zeros(1, 4), 1.0, torch.tensor([0.0, 1.6, -1.7, 3.0]))
    assert m["coverage_90"] == pytest.approx(0.5)
    # a mixture of N(-3, 1) and N(3, 1): 0 is its median, so covered; +-6 are beyond the 5%/95% quantiles
    mixture = torch.tensor([[-3.0, -3.0, -3.0], [3.0, 3.0, 3.0]])
    assert regression_metrics(mixture, 1.0, torch.tensor([0.0, 6.0, -6.0]))["coverage_90"] == pytest.approx(1 / 3)
    # many calibrated draws: coverage close to 0.9
    y = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    assert regression_metrics(torch.zeros(1, 20000), 1.0, y)["coverage_90"] == pytest.approx(0.9, abs=0.01)
