"""Multirun sweeps: real sweeps with the joblib, submitit-local and Ray launchers, and their summary."""

import csv
import importlib.util
import json

import pytest

from helpers import TINY, cli, compose_train, fake_job
from pyro_bnn.app.summarize import summarize


def sweep(tmp_path, *overrides):
    proc = cli("pyro_bnn.train", "-m", *overrides, *TINY, f"hydra.sweep.dir={tmp_path}", check=False)
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    return proc, rows


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["local_parallel", "submitit_local", "ray"])
def test_a_failing_job_loses_nothing_of_the_others(tmp_path, launcher):
    if launcher == "ray":
        pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    # job 1's config is valid; its data set is not there (a failure at run time: bad configs refuse the whole sweep)
    proc, rows = sweep(tmp_path, f"launcher={launcher}", "data=digits,mnist,digits", f"data.root={tmp_path}/no_data")
    assert proc.returncode != 0  # the sweep reports the failure...
    assert [r["job"] for r in rows] == ["0", "1", "2"]
    assert [r["data"] for r in rows] == ["digits", "mnist", "digits"]
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]  # ...and keeps the other jobs
    assert "dataset 'mnist' was not found under" in rows[1]["error"]
    for r in (rows[0], rows[2]):
        metrics = json.loads((tmp_path / r["job"] / "metrics.json").read_text())
        assert float(r["accuracy"]) == pytest.approx(metrics["test"]["accuracy"])
        assert float(r["train_kl"]) == pytest.approx(metrics["train"]["kl"])
    assert (tmp_path / "summary.md").read_text().count("\n") == 5
    assert (tmp_path / "summary_data.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "batched"])  # batched: the launcher checks the configs it composes
def test_a_sweep_with_a_bad_job_config_is_refused_before_any_job_runs(tmp_path, launcher):
    proc = cli("pyro_bnn.train", "-m", "prior.scale=1,0", *TINY, f"launcher={launcher}",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (f"error: job 1 of the sweep (prior.scale=0 +experiment=debug "
                                                     f"launcher={launcher}): prior.scale=0 is not allowed: use a "
                                                     "finite number > 0; nothing was run")
    assert not any((tmp_path / "sweep").glob("*/metrics.json"))


@pytest.mark.slow
def test_summarize_tells_the_truth_about_every_job(tmp_path):
    proc, rows = sweep(tmp_path, "prior.scale=0.3,1,3")
    assert proc.returncode == 0 and [r["status"] for r in rows] == ["ok", "ok", "ok"]
    # job 1 started but never finished (killed, or still running); job 2 was interrupted, then resumed and
    # interrupted again; a job 3 never started (a copy of the sweep's plan with a fourth value)
    (tmp_path / "1" / "metrics.json").unlink()
    (tmp_path / "2" / "metrics.json").unlink()
    (tmp_path / "2" / "status.json").write_text(json.dumps({"status": "interrupted", "error": "SIGTERM received"}))
    overrides = tmp_path / "2" / ".hydra" / "overrides.yaml"
    overrides.write_text(overrides.read_text() + "- resume=true\n")
    plan = tmp_path / "multirun.yaml"
    plan.write_text(plan.read_text().replace("prior.scale=0.3,1,3", "prior.scale=0.3,1,3,10"))
    (tmp_path / "summary.csv").unlink()
    out = cli("pyro_bnn.app.summarize", tmp_path)
    assert out.stdout.strip().endswith("1 ok, 0 failed, 1 interrupted, 1 incomplete, 0 unreadable, 1 not started")
    table = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [(r["job"], r["prior.scale"], r["status"]) for r in table] == [
        ("0", "0.3", "ok"), ("1", "1", "incomplete"), ("2", "3", "interrupted"), ("3", "10", "not started")]
    assert "resume" not in table[0]  # how job 2 was restarted is not a swept key


def test_summarize_says_what_is_wrong_with_its_argument(tmp_path):
    out = cli("pyro_bnn.app.summarize", tmp_path / "nope", check=False)
    assert out.returncode == 2 and "no sweep dir at" in out.stderr
    with pytest.raises(FileNotFoundError, match="holds no job dirs"):
        summarize(tmp_path)
    assert list(tmp_path.iterdir()) == []  # a refused summary leaves nothing behind (no lock file)


@pytest.mark.parametrize("preset, key", [("prior_scale", "prior.scale"), ("prior_family", "prior"),
                                         ("kl_weight", "inference.kl_weight"), ("guide_init", "guide.init_loc")])
def test_sweep_presets(preset, key):
    params = compose_train(f"+sweep={preset}", hydra_node=True).hydra.sweeper.params
    assert key in params and len(str(params[key]).split(",")) >= 2


@pytest.mark.parametrize("launcher, target, threads", [
    ("basic", "BasicLauncher", 1),
    pytest.param("ray", "RayLauncher", 1, marks=pytest.mark.skipif(
        importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None, reason="the ray extra")),
    ("local_parallel", "JoblibLauncher", 1),
    ("submitit_local", "LocalLauncher", 1),
    ("slurm", "SlurmLauncher", 2),
    ("batched", "BatchedLauncher", 0),
])
def test_launcher_presets(launcher, target, threads):
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_train(f"launcher={launcher}", hydra_node=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    HydraConfig.instance().set_config(cfg)  # as in a job, for ${hydra:...} (slurm: threads = cpus_per_task)
    assert cfg.threads == threads
    if launcher == "slurm":
        assert {"partition", "timeout_min", "mem_gb", "gpus_per_node", "array_parallelism"} <= set(cfg.hydra.launcher)


@pytest.mark.slow
def test_optuna_preset_searches_and_summarises(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cli("pyro_bnn.train", "-m", "+sweep=optuna_prior_scale", "hydra.sweeper.n_trials=2", *TINY,
        f"hydra.sweep.dir={tmp_path}")
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    best = (tmp_path / "optimization_results.yaml").read_text()
    assert f"best_value: {min(float(r['nll']) for r in rows)}" in best


def test_a_job_without_a_swept_key_is_summarised(tmp_path):
    """A resumed job's overrides may lack a key the others have (launcher=): its row is kept, the plots drawn."""
    fake_job(tmp_path, 0, ["launcher=local_parallel", "prior.scale=1"], 1.0, -1.0)
    fake_job(tmp_path, 1, ["launcher=local_parallel", "prior.scale=2"], 2.0, -2.0)
    fake_job(tmp_path, 2, ["prior.scale=3", "resume=true"], 3.0, -3.0)
    rows = summarize(tmp_path)
    assert [r.get("launcher", "") for r in rows] == ["local_parallel", "local_parallel", ""]
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert (tmp_path / "summary_launcher.png").is_file() and (tmp_path / "summary_prior.scale.png").is_file()
    assert not (tmp_path / ".summary.lock").exists()  # the lock is on the dir itself


def test_jobs_whose_files_cannot_be_read_are_rows_with_their_reason_and_the_others_are_summarised(tmp_path):
    for job in range(7):
        fake_job(tmp_path, job, [f"seed={job}"], 1.0 + job, -1.0)
    (tmp_path / "1" / "metrics.json").write_bytes(bytes(range(256)))  # random bytes
    (tmp_path / "2" / "metrics.json").write_text('{"test": {"rmse": 1.')  # half-written
    (tmp_path / "3" / "metrics.json").write_text("")  # empty
    (tmp_path / "4" / "metrics.json").write_text('{"train": {"nll": 1, "kl": 2}, "time_s": 3}')  # no test
    (tmp_path / "5" / ".hydra" / "overrides.yaml").write_text("- [unclosed")  # corrupt overrides
    (tmp_path / "6" / ".hydra" / "overrides.yaml").write_text("")  # no overrides: not of this grid
    rows = summarize(tmp_path)
    assert [r["status"] for r in rows] == ["ok"] + ["unreadable"] * 6
    errors = [r["error"] for r in rows[1:]]
    assert [e.split(":")[0].split(" ")[0] for e in errors] == ["metrics.json"] * 4 + [".hydra/overrides.yaml"] * 2
    assert "no 'test' in it" in errors[3] and "empty" in errors[5]
    table = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["status"] for r in table] == [r["status"] for r in rows] and table[0]["rmse"] == "1.0"


def test_a_folder_of_single_runs_is_not_summarised_as_a_sweep(tmp_path):
    for name, overrides in (("07-28-28.664621", ["data=toy_regression"]), ("07-30-01.000001", ["model=mlp"])):
        run = tmp_path / name
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    with pytest.raises(FileNotFoundError, match="is not a sweep's dir .* are single runs"):
        summarize(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["07-28-28.664621", "07-30-01.000001"]  # nothing written


@pytest.mark.slow
def test_ctrl_c_in_a_parallel_sweep_leaves_a_summary_and_each_jobs_status(tmp_path):
    """Ctrl-C reaches the launcher and its workers (one process group): no traceback, one line saying where the
    summary is, a job that was training is interrupted with its checkpoint, the rest are truthfully incomplete."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import QUIET, ROOT

    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "pyro_bnn.train", "-m", "+experiment=debug", "launcher=local_parallel",
                             "prior.scale=0.1,1", "inference.epochs=200", *QUIET, f"hydra.sweep.dir={sweep}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(sweep.glob("*/checkpoint.pt")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err and "leaked semaphore" not in err, err
    assert f"interrupted: the sweep in {sweep} stopped; what each job did: {sweep / 'summary.md'}" in err
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert {r["status"] for r in rows} <= {"interrupted", "incomplete", "ok"} and "interrupted" in {r["status"] for r in rows}
    for row in rows:
        if row["status"] == "interrupted":
            assert (sweep / row["job"] / "checkpoint.pt").is_file() and "resume=true" in row["error"]


@pytest.mark.slow
def test_a_basic_sweep_resumed_leaves_its_finished_jobs_and_runs_again_one_that_left_no_checkpoint(tmp_path):
    """resume=true hydra.sweep.dir=<dir> with the sweep's command (launcher=basic): a finished job's files are left
    byte for byte, a failed job that left no checkpoint runs from the start, and the summary says both are ok."""
    import csv
    import json

    from helpers import QUIET, cli

    sweep = tmp_path / "sweep"
    run = ["-m", "+experiment=debug", "inference.epochs=2", "prior.scale=0.5,1", f"hydra.sweep.dir={sweep}"]
    cli("pyro_bnn.train", *run, *QUIET, cwd=tmp_path)
    def run_files(job):  # its log and .hydra/ say the resumed command ran; what it computed stays
        return {p.name: p.read_bytes() for p in (sweep / job).iterdir() if p.is_file() and p.name != "train.log"}

    finished = run_files("0")
    expected = json.loads((sweep / "1" / "metrics.json").read_text())["test"]
    (sweep / "1" / "metrics.json").unlink()  # as a job that failed after training leaves it
    (sweep / "1" / "status.json").write_text('{"status": "failed", "error": "RuntimeError: lost"}')
    cli("pyro_bnn.train", *run, "resume=true", cwd=tmp_path)
    assert "finished earlier: its files are left as they are" in (sweep / "0" / "train.log").read_text()
    assert run_files("0") == finished
    assert json.loads((sweep / "1" / "metrics.json").read_text())["test"] == expected  # the same seed, the same run
    assert not (sweep / "1" / "status.json").exists()
    assert [row["status"] for row in csv.DictReader((sweep / "summary.csv").open())] == ["ok", "ok"]
