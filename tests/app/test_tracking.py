"""tracker=mlflow: each run an MLflow run, a sweep a parent run with one child run per job, read back from a real
local store with MlflowClient."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import QUIET, ROOT, cli, write_uci

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

#: A short run of the UCI preset on generated data.
UCI = ["+experiment=uci", "data.name=toy", "eval.num_samples=20"]


def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def runs(uri):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("pyro_bnn")
    return client, client.search_runs([experiment.experiment_id])


def sweep_runs(uri):
    """The sweep's parent run and its child runs by name."""
    client, found = runs(uri)
    parents = [run for run in found if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1
    children = {run.info.run_name: run for run in found if run.data.tags.get("mlflow.parentRunId") ==
                parents[0].info.run_id}
    assert len(children) == len(found) - 1
    return client, parents[0], children


@pytest.mark.parametrize("launcher", ["basic", "batched", "local_parallel",
                                      pytest.param("submitit_local", marks=pytest.mark.slow),
                                      pytest.param("ray", marks=pytest.mark.slow)])
def test_a_sweep_is_a_parent_run_with_a_finished_child_run_per_job_holding_its_config_epochs_metrics_and_files(
        tmp_path, launcher):
    write_uci(tmp_path / "uci", "toy", rows=80, splits=2)
    uri, sweep = store(tmp_path), tmp_path / "sweep"
    cli("pyro_bnn.train", "-m", *UCI, f"data.root={tmp_path / 'uci'}", "inference.steps=40", "data.split=0,1",
        f"launcher={launcher}", "tracker=mlflow", f"tracker.uri={uri}", f"hydra.sweep.dir={sweep}", *QUIET, cwd=tmp_path)
    client, parent, children = sweep_runs(uri)
    assert parent.info.status == "FINISHED" and parent.data.tags["pyro_bnn.sweep_dir"] == str(sweep.resolve())
    assert sorted(children) == ["0", "1"]
    for job, run in children.items():
        assert run.info.status == "FINISHED"
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert run.data.params["data.split"] == job and run.data.params["inference.lr"] == "0.01"
        assert run.data.params["prior._target_"] == "pyro_bnn.model.priors.NormalPrior"
        assert run.data.tags["env.torch"] == metrics["environment"]["torch"]
        nll = client.get_metric_history(run.info.run_id, "train.nll")
        assert [m.step for m in nll] == list(range(1, metrics["epochs"] + 1))
        assert nll[-1].value == pytest.approx(metrics["train"]["nll"])
        assert {f"train.kl.{layer}" for layer in metrics["train"]["kl_layers"]} <= set(run.data.metrics)
        assert run.data.metrics["test.log_likelihood"] == pytest.approx(metrics["test"]["log_likelihood"])
        files = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
        assert {"metrics.json", "posterior.pt", "history.csv", "elbo_terms.png", "posterior_health.png"} <= files
    assert not list(tmp_path.glob("outputs/mlflow.db"))  # tracker.uri: nothing in the default store


def test_a_job_that_fails_ends_its_run_failed_with_its_error_and_the_others_finish(tmp_path):
    write_uci(tmp_path / "uci", "toy", rows=80, splits=1)
    uri = store(tmp_path)
    proc = cli("pyro_bnn.train", "-m", *UCI, f"data.root={tmp_path / 'uci'}", "inference.steps=20", "prior.scale=1,1e-30",
               "guide.init_scale=1e-31", "launcher=batched", "tracker=mlflow", f"tracker.uri={uri}",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", *QUIET, cwd=tmp_path, check=False)
    assert proc.returncode != 0
    _, parent, children = sweep_runs(uri)
    assert children["0"].info.status == "FINISHED" and children["1"].info.status == "FAILED"
    assert children["1"].data.tags["error"].startswith("FloatingPointError: the loss became inf in epoch 1")
    assert parent.info.status == "FAILED"


def test_a_single_run_is_one_run_in_the_default_store_under_outputs(tmp_path):
    cli("pyro_bnn.train", "+experiment=debug", "inference.epochs=2", "tracker=mlflow", f"hydra.run.dir={tmp_path / 'run'}",
        *QUIET, cwd=tmp_path)
    assert (tmp_path / "outputs" / "mlflow.db").is_file()
    client, found = runs(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    assert [run.info.status for run in found] == ["FINISHED"] and "mlflow.parentRunId" not in found[0].data.tags
    artifacts = {artifact.path for artifact in client.list_artifacts(found[0].info.run_id)}
    assert "posterior.pt" in artifacts and (tmp_path / "outputs" / "mlartifacts").is_dir()


def test_without_mlflow_tracker_mlflow_is_one_line_naming_the_install_command(tmp_path):
    blocker = tmp_path / "site"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['mlflow'] = None\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "pyro_bnn.train", "+experiment=debug", "tracker=mlflow",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: tracker=mlflow needs the mlflow package: pip install 'pyro_bnn[mlflow]' (or leave tracker unset: "
        "tracker=none)")
    assert not (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "outputs").exists()  # nothing trained


@pytest.mark.slow
def test_a_resumed_run_goes_on_in_its_mlflow_run(tmp_path):
    run_dir, uri = tmp_path / "run", store(tmp_path)
    args = ["+experiment=debug", "inference.epochs=400", "tracker=mlflow", f"tracker.uri={uri}", *QUIET]
    proc = subprocess.Popen([sys.executable, "-m", "pyro_bnn.train", *args, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT
    client, (stopped,) = runs(uri)
    assert stopped.info.status == "KILLED" and "SIGINT" in stopped.data.tags["error"]
    cli("pyro_bnn.train", *args, "resume=true", f"hydra.run.dir={run_dir}")
    client, (resumed,) = runs(uri)
    assert resumed.info.run_id == stopped.info.run_id and resumed.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(resumed.info.run_id, "train.loss")]
    assert steps[-1] == 400 and len(set(steps)) == 400  # every epoch, each once at least
