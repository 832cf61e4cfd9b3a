import math

import pytest
import torch

from pyro_bnn import classification_metrics, regression_metrics
from pyro_bnn.evaluation import expected_calibration_error

PROBS = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
TARGETS = torch.tensor([0, 1, 1, 0])


def test_classification_metrics_on_a_hand_made_table():
    m = classification_metrics(PROBS, TARGETS)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.2) + math.log(0.7) + math.log(0.6)) / 4)
    assert m["brier"] == pytest.approx((0.02 + 1.28 + 0.18 + 0.32) / 4)
    # every example alone in its confidence bin: ECE = mean |correct - confidence|
    assert m["ece"] == pytest.approx((0.1 + 0.8 + 0.3 + 0.4) / 4)
    assert m["mutual_information"] == pytest.approx(0.0, abs=1e-12)  # a single sample has no epistemic part


def test_ece_averages_within_a_bin_and_weights_bins_by_size():
    conf = torch.tensor([0.95, 0.97, 0.55, 0.55], dtype=torch.float64)
    correct = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    assert expected_calibration_error(conf, correct) == pytest.approx(0.5 * 0.46 + 0.5 * 0.45)
    assert expected_calibration_error(torch.tensor([1.0]), torch.tensor([1.0])) == 0.0


def test_entropy_and_mutual_information_of_disagreeing_samples():
    probs = torch.tensor([[[0.9, 0.1]], [[0.1, 0.9]]])  # two posterior samples, one example
    m = classification_metrics(probs, torch.tensor([0]))
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert m["entropy"] == pytest.approx(math.log(2))
    assert m["expected_entropy"] == pytest.approx(h)
    assert m["mutual_information"] == pytest.approx(math.log(2) - h)
    assert m["nll"] == pytest.approx(math.log(2))


def test_regression_metrics_of_a_two_component_mixture():
    m = regression_metrics(torch.tensor([[0.0], [2.0]]), 1.0, torch.tensor([1.0]))
    assert m["rmse"] == pytest.approx(0.0)
    assert m["log_likelihood"] == pytest.approx(-0.5 * math.log(2 * math.pi) - 0.5)
    assert m["predictive_std"] == pytest.approx(math.sqrt(2.0))
    m = regression_metrics(torch.tensor([[0.0, 0.0]]), 0.5, torch.tensor([1.0, -3.0]))
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 9) / 2))
