"""The UCI regression benchmark: the loader on files written in the layout, the heteroscedastic likelihood's ELBO,
metrics in the original units, the preset end to end, the replicates' mean +- standard error of a sweep."""

import csv
import json
import logging
import math
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from helpers import QUIET, FixedNoise, assert_close, cli, compose_train, fake_job, fused_noise, last_line, spread_guide, write_uci
from pyro_bnn import (
    BayesianMLP,
    Gaussian,
    HeteroscedasticGaussian,
    MeanFieldELBO,
    NormalPrior,
    Schedule,
    auto_normal,
    evaluate,
    fit,
    in_original_units,
    load_data,
    make_loader,
    regression_metrics,
)
from pyro_bnn.app.build import build_prior
from pyro_bnn.app.summarize import replicate_groups, summarize
from pyro_bnn.objectives.empirical_bayes import EmpiricalBayes

SHARED_UCI = Path(__file__).resolve().parents[2] / "shared" / "uci"


def test_the_loader_reads_a_split_and_standardises_it_by_its_training_part(tmp_path):
    table = write_uci(tmp_path)
    data = load_data("uci", root=str(tmp_path), name="toy", split=1)
    train = np.loadtxt(tmp_path / "toy" / "data" / "index_train_1.txt", dtype=int)
    test = np.loadtxt(tmp_path / "toy" / "data" / "index_test_1.txt", dtype=int)
    x, y = data.train.tensors
    assert (data.in_shape, data.num_outputs, data.task, data.loader, data.split) == ((3,), 1, "regression", "uci", 1)
    assert len(data.train) == len(train) and len(data.test) == len(test)
    assert data.target_mean == pytest.approx(table[train, 3].mean())
    assert data.target_std == pytest.approx(table[train, 3].std(ddof=1))
    assert_close(x.mean(0), torch.zeros(3), atol=1e-5)  # the training part has mean 0, sd 1...
    assert_close(x.std(0), torch.ones(3), atol=1e-5)
    expected_test = (table[test, 3] - table[train, 3].mean()) / table[train, 3].std(ddof=1)
    assert_close(data.test.tensors[1], torch.tensor(expected_test), atol=1e-5)  # ...and the test part its statistics
    assert not torch.equal(y, load_data("uci", root=str(tmp_path), name="toy", split=0).train.tensors[1])


def test_a_constant_input_keeps_sd_one_and_is_named(tmp_path, caplog):
    write_uci(tmp_path, constant_column=True)
    with caplog.at_level(logging.WARNING):
        data = load_data("uci", root=str(tmp_path), name="toy", split=0)
    assert bool((data.train.tensors[0][:, 2] == 0).all())  # (7 - 7) / 1
    assert "input column(s) [2] of data.txt are constant" in caplog.text


@pytest.mark.parametrize("damage, message", [
    ("split", "data.split=3: UCI data set 'toy' has splits 0 .. 2"),
    ("missing", "index_test_0.txt is missing"),
    ("text", "data.txt line 5 is not numeric"),
    ("index", "index_train_0.txt holds indices outside 0 .. 59"),
    ("folder", "no UCI data set 'other' under"),
])
def test_bad_files_get_one_clear_line(tmp_path, damage, message):
    write_uci(tmp_path)
    folder = tmp_path / "toy" / "data"
    name, split = "toy", 0
    if damage == "split":
        split = 3
    elif damage == "missing":
        (folder / "index_test_0.txt").unlink()
    elif damage == "text":
        lines = (folder / "data.txt").read_text().splitlines()
        lines[4] = "1.0 two 3.0 4.0"
        (folder / "data.txt").write_text("\n".join(lines) + "\n")
    elif damage == "index":
        (folder / "index_train_0.txt").write_text("0\n60\n")
    else:
        name = "other"
    with pytest.raises((ValueError, FileNotFoundError), match=message.replace("(", r"\(").replace(")", r"\)")):
        load_data("uci", root=str(tmp_path), name=name, split=split)


def test_a_failed_download_is_one_line(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(FileNotFoundError, match="UCI data set 'yacht' could not be downloaded from https://raw"):
        load_data("uci", root=str(tmp_path), name="yacht", download=True)
    assert list(tmp_path.iterdir()) == []  # no empty yacht/data left behind: the next run says "no UCI data set"
    with pytest.raises(FileNotFoundError, match="no UCI data set 'yacht' under"):
        load_data("uci", root=str(tmp_path), name="yacht")


def test_a_download_into_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(FileNotFoundError, match="cannot be downloaded into .*: set data.root to a folder you can write"):
        load_data("uci", root=str(tmp_path / "a_file"), name="yacht", download=True)


def test_training_rows_listed_twice_are_warned_about(tmp_path, caplog):
    write_uci(tmp_path)
    index = tmp_path / "toy" / "data" / "index_train_0.txt"
    index.write_text(index.read_text() + index.read_text().splitlines(keepends=True)[0])
    with caplog.at_level(logging.WARNING):
        data = load_data("uci", root=str(tmp_path), name="toy", split=0)
    assert "lists 1 training row(s) more than once" in caplog.text and len(data.train) == 49
    with pytest.raises(ValueError, match=r"data.split=True: UCI data set 'toy' has splits 0 .. 2 \(an integer index\)"):
        load_data("uci", root=str(tmp_path), name="toy", split=True)


@pytest.mark.skipif(not (SHARED_UCI / "yacht").is_dir(), reason="../shared/uci is not here")
def test_the_published_yacht_splits_load():
    data = load_data("uci", root=str(SHARED_UCI), name="yacht", split=19)
    assert (len(data.train), len(data.test), data.in_shape) == (277, 31, (6,))


@pytest.mark.parametrize("fused", [True, False])
def test_heteroscedastic_loss_equals_trace_elbo_given_the_same_noise(fused):
    torch.manual_seed(0)
    x, y = torch.randn(40, 3), torch.randn(40)
    model = BayesianMLP(3, 2, hidden=(8,), prior=NormalPrior(1.0), likelihood=HeteroscedasticGaussian(0.01),
                        num_data=400)
    guide = spread_guide(model, x, y)
    pyro.set_rng_seed(3)
    terms = MeanFieldELBO(kl="mc", fused=True).terms(model, guide, x, y)
    expected = Trace_ELBO().differentiable_loss(model, FixedNoise(fused_noise(guide, 3))(guide), x, y)
    assert_close(terms.loss, expected, rtol=1e-5)
    # the observation's sd is floor + softplus(second output), per example
    outputs = torch.tensor([[0.0, -50.0], [1.0, 0.0]])
    loc, scale = model.likelihood.loc_scale(outputs)
    assert_close(loc, [0.0, 1.0])
    assert_close(scale, [0.01, 0.01 + math.log(2.0)], rtol=1e-5)
    fit(model, guide, make_loader(torch.utils.data.TensorDataset(x, y), 20), Schedule(epochs=2),
        MeanFieldELBO(fused=fused))


def test_likelihoods_refuse_a_network_of_the_wrong_width():
    with pytest.raises(ValueError, match="HeteroscedasticGaussian reads 2 network output"):
        BayesianMLP(3, 1, likelihood=HeteroscedasticGaussian())
    with pytest.raises(ValueError, match="Gaussian reads 1 network output"):
        BayesianMLP(3, 10, likelihood=Gaussian())
    with pytest.raises(ValueError, match="min_scale=0"):
        HeteroscedasticGaussian(0)


def test_regression_metrics_of_a_heteroscedastic_mixture_and_in_original_units():
    locs = torch.tensor([[0.0, 1.0], [2.0, 1.0]])  # S = 2 draws, N = 2 examples
    scales = torch.tensor([[1.0, 0.5], [1.0, 2.0]])
    y = torch.tensor([1.0, 1.0])
    m = regression_metrics(locs, scales, y)
    normal = torch.distributions.Normal
    ll = [math.log(0.5 * (normal(0.0, 1.0).log_prob(torch.tensor(1.0)).exp() + normal(2.0, 1.0).log_prob(torch.tensor(1.0)).exp())),
          math.log(0.5 * (normal(1.0, 0.5).log_prob(torch.tensor(1.0)).exp() + normal(1.0, 2.0).log_prob(torch.tensor(1.0)).exp()))]
    assert m["log_likelihood"] == pytest.approx(sum(ll) / 2)
    assert m["epistemic_std"] == pytest.approx(0.5)  # sd of the means: 1 and 0
    assert m["aleatoric_std"] == pytest.approx((1.0 + math.sqrt((0.25 + 4) / 2)) / 2)
    assert m["predictive_std"] == pytest.approx((math.sqrt(1 + 1) + math.sqrt(2.125)) / 2)
    original = in_original_units(m, 4.0)
    assert original["rmse"] == pytest.approx(4 * m["rmse"])
    assert original["log_likelihood"] == pytest.approx(m["log_likelihood"] - math.log(4.0))
    assert original["coverage_90"] == m["coverage_90"]


def test_the_metrics_in_original_units_are_those_of_the_unstandardised_targets(tmp_path):
    """The same predictive scored on standardised targets and converted, or scored on the original targets."""
    write_uci(tmp_path)
    data = load_data("uci", root=str(tmp_path), name="toy", split=0)
    model = BayesianMLP(3, 2, hidden=(8,), likelihood=HeteroscedasticGaussian(), num_data=len(data.train))
    guide = auto_normal(model, init_scale=0.01)
    fit(model, guide, make_loader(data.train, 16, shuffle=True), Schedule(epochs=5))
    pyro.set_rng_seed(0)
    standardised = evaluate(model, guide, make_loader(data.test, 100), num_samples=20)
    pyro.set_rng_seed(0)
    from pyro_bnn import predict

    outputs, targets = predict(model, guide, make_loader(data.test, 100), num_samples=20)
    loc, scale = model.likelihood.loc_scale(outputs)
    s, m = data.target_std, data.target_mean
    direct = regression_metrics(loc * s + m, scale * s, targets * s + m)
    for key, value in in_original_units(standardised, s).items():
        assert value == pytest.approx(direct[key], rel=1e-6), key


def test_the_preset_trains_and_reports_original_units(tmp_path):
    write_uci(tmp_path / "uci", rows=80)
    run_dir = tmp_path / "run"
    cli("pyro_bnn.train", "+experiment=uci", "data.name=toy", f"data.root={tmp_path / 'uci'}", "data.split=2",
        "inference.steps=60", "inference.large_data.above=50", "inference.large_data.steps=40",
        "inference.large_data.lr=0.005", "inference.large_data.batch_size=16", "eval.num_samples=10",
        *QUIET, f"hydra.run.dir={run_dir}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    std = metrics["data"]["target_std"]
    assert metrics["data"]["split"] == 2 and metrics["exact_elbo"] is True
    # the preset's KL warm-up over 30% of the epochs (3 of 10), then the exact ELBO's weight of 1
    assert metrics["kl_weight_used"] == {"first_epoch": pytest.approx(1 / 3), "last_epoch": 1.0, "warmup_epochs": 3,
                                         "warmup_finished": True}
    # 64 training examples > large_data.above: its 40 steps of 16 examples (4 per epoch) at its lr, not
    # inference.steps of data.batch_size
    assert metrics["epochs"] == 10 and metrics["schedule"] == {"steps": 40, "lr": 0.005, "batch_size": 16,
                                                                "large_data": True}
    assert metrics["test"]["rmse"] == pytest.approx(metrics["test_standardised"]["rmse"] * std)
    assert metrics["test"]["log_likelihood"] == pytest.approx(metrics["test_standardised"]["log_likelihood"] - math.log(std))
    assert set(metrics["prior_scales"]) == {"net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias"}
    assert (run_dir / "predictive.png").stat().st_size > 1000
    evaluation = cli("pyro_bnn.app.evaluate", f"run_dir={run_dir}", *QUIET)
    assert json.loads(evaluation.stdout)["rmse"] == pytest.approx(metrics["test"]["rmse"], rel=0.3)
    out = cli("pyro_bnn.train", "+experiment=uci", "data.name=toy", f"data.root={tmp_path / 'uci'}", "data.split=5",
              *QUIET, f"hydra.run.dir={tmp_path / 'refused'}", check=False)
    assert "data.split=5: UCI data set 'toy' has splits 0 .. 2" in last_line(out)
    (tmp_path / "uci").rename(tmp_path / "moved")  # the run's data is not where the run read it any more
    out = cli("pyro_bnn.app.evaluate", f"run_dir={run_dir}", *QUIET, check=False)
    assert "no UCI data set 'toy' under" in last_line(out) and "evaluate reads the run's own data under its data.root (" \
        f"{tmp_path / 'uci'}, from its posterior.pt): put the data set back there" in last_line(out)


def test_a_sweep_summary_gives_the_mean_and_standard_error_over_splits_and_seeds(tmp_path):
    values = {("a", 0): (1.0, -1.0), ("a", 1): (2.0, -2.0), ("a", 2): (4.0, -3.0), ("b", 0): (5.0, -4.0)}
    for job, ((group, split), (rmse, ll)) in enumerate(values.items()):
        fake_job(tmp_path, job, [f"data.name={group}", f"data.split={split}"], rmse, ll)
    rows = summarize(tmp_path)
    groups = replicate_groups(rows, ["data.name", "data.split"])
    a = next(g for g in groups if g["data.name"] == "a")
    assert a["replicates"] == 3 and a["rmse_mean"] == pytest.approx(7 / 3)
    assert a["rmse_se"] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1) / math.sqrt(3))
    assert a["log_likelihood_se"] == pytest.approx(1 / math.sqrt(3))
    b = next(g for g in groups if g["data.name"] == "b")
    assert b["replicates"] == 1 and "rmse_se" not in b
    table = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [float(r["rmse_mean"]) for r in table] == pytest.approx([7 / 3] * 3 + [5.0])
    markdown = (tmp_path / "summary.md").read_text()
    assert "Mean +- standard error over the replicates" in markdown and "| a | 3 | 2.333 +- 0.88 |" in markdown


def test_the_presets_network_is_as_wide_as_the_data_sets_n_hidden(tmp_path):
    write_uci(tmp_path)  # n_hidden.txt: 8
    preset = ("+experiment=uci", "data.name=toy", f"data.root={tmp_path}")
    assert list(compose_train(*preset).model.hidden) == [8]
    (tmp_path / "toy" / "data" / "n_hidden.txt").write_text("100\n")  # protein's
    assert list(compose_train(*preset).model.hidden) == [100]
    assert list(compose_train(*preset, "model.hidden=[7]").model.hidden) == [7]  # a given width wins
    # not downloaded yet: the protocol's 50 (data.download=true fetches n_hidden.txt before the network is built)
    assert list(compose_train(*preset, "data.name=absent").model.hidden) == [50]


def test_training_is_scaled_to_the_data_by_steps_min_epochs_and_the_size_rule():
    from omegaconf import OmegaConf

    from pyro_bnn.app.build import training_schedule

    rule = OmegaConf.create({"epochs": 5, "steps": 60, "min_epochs": 0, "lr": 0.01, "kl_warmup_epochs": 0,
                             "large_data": {"above": 0, "steps": 0, "lr": 0.0, "batch_size": 0}})
    assert training_schedule(rule, num_train=64, batch_size=32) == (30, 2, 0.01, False, 32)  # 2 steps per epoch
    assert training_schedule(rule, num_train=6400, batch_size=32).epochs == 1
    assert training_schedule(OmegaConf.merge(rule, {"min_epochs": 4}), num_train=6400, batch_size=32).epochs == 4
    assert training_schedule(OmegaConf.merge(rule, {"steps": 0}), num_train=6400, batch_size=32).epochs == 5
    large = OmegaConf.merge(rule, {"large_data": {"above": 100, "steps": 600, "lr": 0.003}})
    assert training_schedule(large, num_train=64, batch_size=32) == (30, 2, 0.01, False, 32)  # not above: as before
    assert training_schedule(large, num_train=6400, batch_size=32) == (3, 200, 0.003, True, 32)
    only_lr = OmegaConf.merge(large, {"large_data": {"steps": 0}})
    assert training_schedule(only_lr, num_train=6400, batch_size=32) == (1, 200, 0.003, True, 32)
    # the rule's batch size: 600 steps of 640 examples are 60 epochs of 10 steps
    bigger = OmegaConf.merge(large, {"large_data": {"batch_size": 640}})
    assert training_schedule(bigger, num_train=6400, batch_size=32) == (60, 10, 0.003, True, 640)
    assert training_schedule(bigger, num_train=64, batch_size=32) == (30, 2, 0.01, False, 32)
    # a run saved before the rule had a batch size keeps data.batch_size
    saved = OmegaConf.create({**OmegaConf.to_container(large), "large_data": {"above": 100, "steps": 600, "lr": 0.003}})
    assert training_schedule(saved, num_train=6400, batch_size=32).batch_size == 32
    # a batch larger than the training split is the split: the batch size recorded is the one the loader gives
    assert training_schedule(bigger, num_train=277, batch_size=32) == (600, 1, 0.003, True, 277)  # not 640


def test_the_presets_prior_is_wu_et_als_inverse_gamma_1_10_on_every_site():
    prior = build_prior(compose_train("+experiment=uci").prior)
    model = BayesianMLP(13, 2, hidden=(50,), prior=prior, likelihood=HeteroscedasticGaussian(), num_data=100)
    learned = EmpiricalBayes(model)
    assert learned.alpha == 1.0 and learned.betas.tolist() == pytest.approx([10.0] * 4)
    assert learned.sizes.tolist() == [650, 50, 100, 2]
