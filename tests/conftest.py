import pyro
import pytest
import torch

import pyro_bnn  # noqa: F401  (sets module-local params)
from pyro_bnn import BayesianMLP, NormalPrior, load_data
from torch.utils.data import TensorDataset


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from a clean param store and a fixed seed, with validation on."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    torch.set_num_threads(1)
    with pyro.validation_enabled(True):
        yield


@pytest.fixture(scope="session")
def digits():
    return load_data("digits")


@pytest.fixture(scope="session")
def small_digits(digits):
    """300 training and 100 test digits: enough to train in seconds."""
    tr, te = digits.train.tensors, digits.test.tensors
    return TensorDataset(tr[0][:300], tr[1][:300]), TensorDataset(te[0][:100], te[1][:100])


def small_mlp(num_data=300, scale=1.0, hidden=(16,)):
    return BayesianMLP((1, 8, 8), 10, hidden=hidden, prior=NormalPrior(scale), num_data=num_data)


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64), rtol=rtol, atol=atol)
