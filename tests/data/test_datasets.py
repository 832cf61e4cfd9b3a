import os
import pickle
import struct

import numpy as np
import pytest
import torch

from pyro_bnn import load_data, make_loader


def test_digits_is_the_stratified_reference_split(digits):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    _, x_te, _, y_te = train_test_split(x / 16, y, test_size=0.2, random_state=0, stratify=y)
    assert (len(digits.train), len(digits.test)) == (1437, 360)
    assert digits.in_shape == (1, 8, 8) and digits.num_outputs == 10 and digits.task == "classification"
    assert torch.allclose(digits.test.tensors[0].reshape(360, 64), torch.tensor(x_te, dtype=torch.float32))
    assert torch.equal(digits.test.tensors[1], torch.tensor(y_te))
    other = load_data("digits", split_seed=1)
    assert not torch.equal(other.test.tensors[1], digits.test.tensors[1])


def test_toy_regression_has_a_gap_and_is_seeded():
    data = load_data("toy_regression")
    x = data.train.tensors[0]
    assert data.task == "regression" and data.in_shape == (1,)
    assert x.abs().min() >= 0.35 and x.abs().max() <= 1.0
    assert (x < 0).any() and (x > 0).any()
    assert torch.equal(load_data("toy_regression").train.tensors[1], data.train.tensors[1])


def test_loader_shuffles_by_its_own_seed(digits):
    order = lambda seed: torch.cat([y for _, y in make_loader(digits.train, 100, shuffle=True, seed=seed)])
    assert torch.equal(order(0), order(0)) and not torch.equal(order(0), order(1))
    assert sorted(order(0).tolist()) == sorted(digits.train.tensors[1].tolist())
    assert len(make_loader(digits.train, 100)) == 15


def write_idx(path, array: np.ndarray):
    magic = {1: 0x0801, 3: 0x0803}[array.ndim]
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        f.write(array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_formats_load_from_idx_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 8)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    data = load_data(name, root=str(tmp_path))
    assert (len(data.train), len(data.test)) == (20, 8)
    assert data.in_shape == (1, 28, 28) and data.num_outputs == 10
    x = data.train.tensors[0]
    assert x.mean().abs() < 1e-5 and (x.std() - 1).abs() < 1e-2  # normalised by the training set


def test_cifar10_loads_from_pickled_batches(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 6)]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                         "labels": rng.integers(0, 10, n).tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    # the real files are checked against their published md5 sums; these small ones only need to exist
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    data = load_data("cifar10", root=str(tmp_path))
    assert (len(data.train), len(data.test)) == (20, 6)
    assert data.in_shape == (3, 32, 32) and data.num_outputs == 10
    assert data.train.tensors[0].mean(dim=(0, 2, 3)).abs().max() < 1e-5  # per-channel normalisation


def test_missing_dataset_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="set data.download=true"):
        load_data("mnist", root=str(tmp_path))
    with pytest.raises(ValueError, match="data='svhn' is not known"):
        load_data("svhn")


def test_held_out_classes_leave_training_and_test_and_become_the_ood_set():
    from pyro_bnn.data.ood import load_ood

    data = load_data("digits", holdout_classes=[8, 9])
    for ds in (data.train, data.test):
        assert not torch.isin(ds.tensors[1], torch.tensor([8, 9])).any()
    ood = load_ood(data, "heldout")
    assert set(ood.tensors[1].tolist()) == {8, 9} and len(ood) + len(data.test) == 360
    assert data.num_outputs == 10
    with pytest.raises(ValueError, match="hold out some"):
        load_data("digits", holdout_classes=[10])
    with pytest.raises(ValueError, match="set data.holdout_classes"):
        load_ood(load_data("digits"), "heldout")


def test_rotated_ood_set_turns_the_test_images(digits):
    from pyro_bnn.data.ood import load_ood

    rotated = load_ood(digits, "rotated")
    x = digits.test.tensors[0]
    assert torch.equal(rotated.tensors[0][:, 0], x[:, 0].transpose(1, 2).flip(1))  # 90 degrees counter-clockwise
    assert load_ood(digits, "none") is None
    with pytest.raises(ValueError, match="for classification; use data.ood=none"):
        load_ood(load_data("toy_regression"), "rotated")
    with pytest.raises(ValueError, match="1x28x28 images"):
        load_ood(digits, "fashion_mnist")


def test_fashion_mnist_as_ood_set_is_normalised_like_mnist(tmp_path):
    from pyro_bnn.data.ood import load_ood

    rng = np.random.default_rng(0)
    for folder, high in (("MNIST", 256), ("FashionMNIST", 64)):
        raw = tmp_path / folder / "raw"
        raw.mkdir(parents=True)
        for prefix, n in (("train", 20), ("t10k", 8)):
            write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, high, (n, 28, 28)))
            write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    mnist = load_data("mnist", root=str(tmp_path))
    ood = load_ood(mnist, "fashion_mnist", root=str(tmp_path))
    assert ood.tensors[0].shape == (8, 1, 28, 28)
    from pyro_bnn.data.torchvision_sets import torchvision_images

    raw_images, _, _ = torchvision_images("fashion_mnist", str(tmp_path), train=False)
    torch.testing.assert_close(ood.tensors[0], (raw_images - mnist.input_mean) / mnist.input_std)
    assert ood.tensors[0].mean() < -0.5  # darker than MNIST on MNIST's scale: not re-normalised on its own
    with pytest.raises(ValueError, match="other than the training data"):
        load_ood(mnist, "mnist", root=str(tmp_path))


def test_subset_keeps_the_first_training_examples(digits):
    small = load_data("digits", subset=100)
    assert len(small.train) == 100 and len(small.test) == 360
    assert torch.equal(small.train.tensors[0], digits.train.tensors[0][:100])
