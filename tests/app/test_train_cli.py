"""The real entry points, run in subprocesses as a user runs them, and the app's train() in-process where a
subprocess adds nothing."""

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import TINY, cli, train_in_process


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cli("pyro_bnn.train", *TINY, f"hydra.run.dir={out}")
    return out


def test_a_run_writes_every_file(run_dir):
    for name in ["metrics.json", "history.csv", "elbo_terms.png", "reliability.png", "uncertainty_ood.png",
                 "posterior_health.png", "posterior.pt", "train.log", ".hydra/config.yaml", ".hydra/overrides.yaml"]:
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"accuracy", "nll", "ece", "brier", "entropy", "mutual_information",
                                    "ood_auroc_entropy", "ood_auroc_mutual_information"}
    assert set(metrics["train"]) >= {"loss", "nll", "kl"}
    assert metrics["exact_elbo"] is False and metrics["kl_weight"] == 0.03 and metrics["time_s"] > 0  # the default's
    assert set(metrics["posterior_health"]) == {f"net.{i}.{p}" for i in (0, 4, 6) for p in ("weight", "bias")}
    assert set(metrics["posterior_health"]["net.0.weight"]) == {"size", "mean_sd", "sd_ratio", "snr", "at_prior"}
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    layers = ["kl.net.0", "kl.net.4", "kl.net.6"]  # debug CNN: conv, dense hidden, dense output
    assert list(rows[0]) == ["epoch", "loss", "nll", "kl", *layers, "kl_weight", "time_s"]
    last = rows[-1]
    assert float(last["loss"]) == pytest.approx(float(last["nll"]) + float(last["kl"]), rel=1e-6)
    assert sum(float(last[k]) for k in layers) == pytest.approx(float(last["kl"]), rel=1e-5)
    assert metrics["train"]["kl_layers"] == {k[3:]: pytest.approx(float(last[k])) for k in layers}
    assert float(last["loss"]) == pytest.approx(metrics["train"]["loss"])


def test_a_learned_prior_scale_is_reported_saved_and_warned_about(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pyro_bnn.app.train"):
        train_in_process(tmp_path, "+experiment=debug", "prior=empirical_bayes")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    sites = {f"net.{i}.{p}" for i in (0, 4, 6) for p in ("weight", "bias")}
    assert set(metrics["prior_scales"]) == sites and all(s > 0 for s in metrics["prior_scales"].values())
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert {"hyperprior", *(f"prior_scale.{s}" for s in sites)} <= set(rows[0])
    assert float(rows[-1]["prior_scale.net.4.weight"]) == pytest.approx(metrics["prior_scales"]["net.4.weight"])
    # two epochs from init_scale 1e-3 at lr 0.01: the posterior sd has not doubled yet
    assert "posterior health: the posterior has barely moved" in caplog.text


def test_evaluate_reloads_the_posterior_and_reproduces_the_test_metrics(run_dir):
    proc = cli("pyro_bnn.app.evaluate", f"run_dir={run_dir}")
    saved = json.loads((run_dir / "metrics.json").read_text())["test"]
    again = json.loads((run_dir / "evaluation_digits.json").read_text())["test"]
    assert again == saved
    assert json.loads(proc.stdout) == saved


def test_evaluate_on_data_of_another_shape_says_so(run_dir):
    proc = cli("pyro_bnn.app.evaluate", f"run_dir={run_dir}", "dataset=toy_regression", check=False)
    assert proc.returncode != 0
    assert "pick a data set of the same shape" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_toy_regression_run_is_more_uncertain_in_the_gap(tmp_path):
    # the recipe (1000 epochs) gives 0.27 in the gap vs 0.14 on the data; 300 epochs already show it
    proc = cli("pyro_bnn.train", "+experiment=toy_regression", "inference.epochs=300", f"hydra.run.dir={tmp_path}")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["test"]) == {"rmse", "log_likelihood", "predictive_std", "aleatoric_std", "epistemic_std",
                                    "coverage_90"}
    assert (tmp_path / "predictive.png").is_file() and not (tmp_path / "reliability.png").exists()
    gap = metrics["uncertainty"]
    assert gap["predictive_std_gap"] > 1.3 * gap["predictive_std_data"], gap
    assert metrics["test"]["rmse"] < 0.2 and metrics["test"]["coverage_90"] > 0.8
    assert "epoch/s" not in proc.stderr and "it/s" not in proc.stderr  # no progress bar without a terminal


def test_held_out_classes_are_the_ood_set(tmp_path):
    train_in_process(tmp_path, "+experiment=debug", "data.holdout_classes=[8,9]", "data.ood=heldout")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train"]["num_data"] == 1437 - 139 - 144  # 80% of the 174 eights and 180 nines
    assert 0 <= metrics["test"]["ood_auroc_entropy"] <= 1
    assert (tmp_path / "uncertainty_ood.png").is_file()


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_in_process(tmp_path, "+experiment=debug", "tensorboard=true")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/nll", "train/kl", "train/kl.net.0", "test/accuracy", "test/ood_auroc_entropy"} <= set(tags)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    assert events.Scalars("test/accuracy")[0].value == pytest.approx(metrics["test"]["accuracy"])


@pytest.mark.slow
def test_nuts_reference_is_written_next_to_the_svi_run(tmp_path):
    cli("pyro_bnn.train", "+experiment=nuts_toy_regression", "inference.epochs=30", "reference.num_samples=20",
        "reference.warmup_steps=20", "reference.max_tree_depth=4", "eval.num_samples=20", f"hydra.run.dir={tmp_path}")
    comparison = json.loads((tmp_path / "reference.json").read_text())
    assert set(comparison["svi"]) >= {"rmse", "log_likelihood", "predictive_std_gap"}
    assert set(comparison["nuts"]) >= {"rmse", "log_likelihood", "predictive_std_gap"}
    assert comparison["nuts_diagnostics"]["num_samples"] == 20
    # 20 draws after 20 warm-up steps have not converged: the reference says so, in its file and in the log
    assert comparison["nuts_diagnostics"]["warnings"] and "NUTS: " in (tmp_path / "train.log").read_text()
    assert len(comparison["predictive_std_over_inputs"]["nuts"]) == 31
    assert (tmp_path / "reference.png").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["reference"]["nuts_test"] == comparison["nuts"]


@pytest.mark.slow
def test_multirun_writes_one_isolated_run_dir_per_job(tmp_path):
    cli("pyro_bnn.train", "-m", "prior.scale=0.1,1", *TINY, f"hydra.sweep.dir={tmp_path}")
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    metrics = [json.loads((p / "metrics.json").read_text()) for p in jobs]
    assert (jobs[0] / ".hydra/overrides.yaml").read_text().count("prior.scale=0.1") == 1
    assert metrics[0]["train"]["kl"] != metrics[1]["train"]["kl"]
    # each job starts from a clean state: job 1 alone gives the same numbers as job 1 in the sweep
    alone = tmp_path / "alone"
    cli("pyro_bnn.train", "prior.scale=1", *TINY, f"hydra.run.dir={alone}")
    assert json.loads((alone / "metrics.json").read_text())["test"] == metrics[1]["test"]


def test_nonsense_value_stops_before_training_with_one_line(tmp_path):
    proc = cli("pyro_bnn.train", "prior.scale=0", *TINY, f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: prior.scale=0 is not allowed: use a finite number > 0")
    assert not (tmp_path / "history.csv").exists()


def test_console_script_finds_its_configs_from_any_directory(tmp_path):
    script = Path(sys.executable).parent / "pyro-bnn-train"
    out = tmp_path / "run"
    proc = subprocess.run([str(script), *TINY, f"hydra.run.dir={out}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "metrics.json").is_file()


def test_a_run_says_where_its_files_are_and_warns_of_a_noise_floor_above_the_targets_sd(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        train_in_process(tmp_path / "run", "+experiment=debug", "data=toy_regression", "model=mlp", "model.hidden=[8]",
                         "likelihood=heteroscedastic", "likelihood.min_scale=5")
    assert f"run files: {(tmp_path / 'run').resolve()}" in caplog.text
    assert "likelihood.min_scale=5 is in the units of the targets and above their sd on the training split" in caplog.text


def test_evaluate_runs_on_the_runs_own_threads(run_dir):
    import torch

    from pyro_bnn.app.evaluate import evaluate_run

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        evaluate_run(run_dir)
        assert torch.get_num_threads() == 1  # the run's threads: 1
    finally:
        torch.set_num_threads(before)


def test_help_lists_the_groups_and_the_config_the_overrides_compose():
    proc = cli("pyro_bnn.train", "--help", "prior=student_t")
    assert "likelihood: auto, categorical, gaussian, heteroscedastic" in proc.stdout
    assert "_target_: pyro_bnn.model.priors.StudentTPrior" in proc.stdout and "df: 3.0" in proc.stdout


#: Prints whether torch was imported by the time the entry point exited (what a refused config costs).
_TORCH_AT_EXIT = ("import runpy, sys\n"
                  "sys.argv = ['pyro_bnn.train', *sys.argv[1:]]\n"
                  "try:\n    runpy.run_module('pyro_bnn.train', run_name='__main__')\n"
                  "except SystemExit as stop:\n    print('exit:', stop.code, file=sys.stderr)\n"
                  "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n")


@pytest.mark.parametrize("override, message", [
    ("prior.scale=0", "prior.scale=0 is not allowed"),
    ("inference.epochs=0", "inference.epochs=0 is not allowed"),
    ("guide.init_scale=-1", "guide.init_scale=-1 is not allowed"),
    ("model.activation=foo", "model.activation=foo is not allowed"),
    ("prior.df=5", "prior.df=5: the prior pyro_bnn.model.priors.NormalPrior does not take it"),
    ("inference.kl_warmup_epochs=5 inference.epochs=4", "inference.kl_warmup_epochs=5 is not allowed: a warm-up longer"),
])
def test_a_bad_value_is_refused_before_torch_is_imported(tmp_path, override, message):
    proc = subprocess.run([sys.executable, "-c", _TORCH_AT_EXIT, *override.split(), f"hydra.run.dir={tmp_path}/run"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert f"exit: error: {message}" in proc.stderr
    assert "torch imported: False" in proc.stderr
