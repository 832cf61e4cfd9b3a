from pathlib import Path

import pyro
import pytest
import torch
from torch.utils.data import TensorDataset

import pyro_bnn  # noqa: F401  (sets module-local params)
from pyro_bnn import load_data


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


@pytest.fixture(scope="session", autouse=True)
def nothing_written_into_the_repository():
    """Tests write run dirs under pytest's tmp_path, never into the repository's outputs/."""
    outputs = Path(__file__).resolve().parents[1] / "outputs"
    before = sorted(outputs.iterdir()) if outputs.is_dir() else []
    yield
    after = sorted(outputs.iterdir()) if outputs.is_dir() else []
    assert after == before, f"tests wrote into {outputs}: {sorted(set(after) - set(before))}"
