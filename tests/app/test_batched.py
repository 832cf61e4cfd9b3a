"""launcher=batched: the jobs of a multirun that differ only in batchable keys train as one batch of models, each with
the run dir of a job run alone; the others run one at a time, with a line saying why."""

import csv
import json
import signal
import subprocess
import sys
import time

import pytest

from helpers import QUIET, TINY, cli, compose_train, write_uci
from pyro_bnn.app.batched import group_key, unbatchable_reason

#: A small UCI-layout sweep: 3 splits of generated data, a short run of the UCI preset.
UCI = ["+experiment=uci", "data.name=toy", "inference.steps=120", "eval.num_samples=20"]


def test_jobs_that_differ_only_in_batchable_keys_share_a_group_and_the_others_do_not():
    base = compose_train("+experiment=uci", "data.name=yacht")
    same = [compose_train("+experiment=uci", "data.name=yacht", override) for override in
            ("data.split=3", "data.split_seed=2", "seed=7", "prior.scale=0.5", "inference.kl_weight=0.3",
             "guide.init_scale=0.01")]
    other = [compose_train("+experiment=uci", "data.name=yacht", override) for override in
             ("inference.lr=0.003", "data.batch_size=64", "model.hidden=[20]", "data.name=energy")]
    assert all(group_key(cfg) == group_key(base) for cfg in same)
    assert unbatchable_reason(compose_train("+experiment=uci", "data.name=yacht", "model.bayesian=last")) is None
    assert all(group_key(cfg) != group_key(base) for cfg in other)


@pytest.mark.parametrize("override, reason", [
    ("guide=auto_delta", "guide=pyro_bnn.guides.auto_delta: a batch trains pyro_bnn.guides.auto_normal"),
    ("prior=laplace", "prior=pyro_bnn.model.priors."),
    ("inference.fused=false", "inference.fused=false: Pyro's traces train one job at a time"),
    ("inference.num_particles=2", "inference.num_particles > 1"),
])
def test_a_job_a_batch_cannot_train_says_why(override, reason):
    assert unbatchable_reason(compose_train("+experiment=uci", "data.name=yacht")) is None
    assert reason in unbatchable_reason(compose_train("+experiment=uci", "data.name=yacht", override))


def test_a_batched_sweep_writes_each_jobs_run_dir_as_a_job_alone_and_evaluate_reproduces_it(tmp_path):
    write_uci(tmp_path / "uci", "toy", rows=80, splits=3)
    sweep = tmp_path / "sweep"
    proc = cli("pyro_bnn.train", "-m", *UCI, f"data.root={tmp_path / 'uci'}", "data.split=0,1,2", "seed=0,1",
               "launcher=batched", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert "jobs [0, 1, 2, 3, 4, 5]: trained as one batch of 6 models" in proc.stdout + proc.stderr
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["ok"] * 6
    alone = tmp_path / "alone"
    cli("pyro_bnn.train", *UCI, f"data.root={tmp_path / 'uci'}", "data.split=1", f"hydra.run.dir={alone}", cwd=tmp_path)
    files = sorted(p.relative_to(alone).as_posix() for p in alone.rglob("*"))
    for job in range(6):
        run = sweep / str(job)
        assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == files
        metrics = json.loads((run / "metrics.json").read_text())
        assert set(metrics) == set(json.loads((alone / "metrics.json").read_text()))
        assert list(csv.DictReader((run / "history.csv").open()))[0].keys() == \
            list(csv.DictReader((alone / "history.csv").open()))[0].keys()
        assert "trained in a batch" in (run / "train.log").read_text()
    evaluated = cli("pyro_bnn.app.evaluate", f"run_dir={sweep / '4'}", cwd=tmp_path)
    assert json.loads(evaluated.stdout) == json.loads((sweep / "4" / "metrics.json").read_text())["test"]
    split = {r["job"]: r["data.split"] for r in rows}
    assert [json.loads((sweep / j / "metrics.json").read_text())["data"]["split"] for j in split] == \
        [int(s) for s in split.values()]


def test_a_batched_sweep_of_the_default_cnn_writes_each_jobs_run_dir_as_a_job_alone(tmp_path):
    sweep, alone = tmp_path / "sweep", tmp_path / "alone"
    proc = cli("pyro_bnn.train", "-m", *TINY, "seed=0,1", "launcher=batched", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert "jobs [0, 1]: trained as one batch of 2 models" in proc.stdout + proc.stderr
    assert [r["status"] for r in csv.DictReader((sweep / "summary.csv").open())] == ["ok", "ok"]
    cli("pyro_bnn.train", *TINY, f"hydra.run.dir={alone}", cwd=tmp_path)
    files = sorted(p.relative_to(alone).as_posix() for p in alone.rglob("*"))
    for job in ("0", "1"):
        assert sorted(p.relative_to(sweep / job).as_posix() for p in (sweep / job).rglob("*")) == files
    evaluated = cli("pyro_bnn.app.evaluate", f"run_dir={sweep / '1'}", cwd=tmp_path)
    assert json.loads(evaluated.stdout) == json.loads((sweep / "1" / "metrics.json").read_text())["test"]


@pytest.mark.slow
def test_jobs_a_batch_cannot_train_run_one_at_a_time_beside_a_batch(tmp_path):
    write_uci(tmp_path / "uci", "toy", rows=80, splits=2)
    sweep = tmp_path / "sweep"
    proc = cli("pyro_bnn.train", "-m", *UCI, f"data.root={tmp_path / 'uci'}", "data.split=0,1",
               "inference.fused=true,false", "launcher=batched", f"hydra.sweep.dir={sweep}", *QUIET, cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert "jobs [0, 2]: trained as one batch of 2 models" in output
    assert "jobs [1, 3]: one at a time (inference.fused=false: Pyro's traces train one job at a time)" in output
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["ok"] * 4


@pytest.mark.slow
def test_a_batch_that_fails_fails_each_of_its_jobs_with_its_error(tmp_path):
    write_uci(tmp_path / "uci", "toy", rows=80, splits=2)
    sweep = tmp_path / "sweep"
    proc = cli("pyro_bnn.train", "-m", *UCI, f"data.root={tmp_path / 'uci'}", "data.split=0,1", "inference.lr=1e6",
               "launcher=batched", f"hydra.sweep.dir={sweep}", *QUIET, cwd=tmp_path, check=False)
    assert proc.returncode != 0
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["failed", "failed"]
    for job in ("0", "1"):
        status = json.loads((sweep / job / "status.json").read_text())
        assert status["status"] == "failed" and "FloatingPointError: the loss became nan in epoch" in status["error"]


def test_a_job_whose_loss_goes_bad_fails_alone_and_the_rest_of_its_batch_finishes(tmp_path):
    write_uci(tmp_path / "uci", "toy", rows=80, splits=1)
    sweep = tmp_path / "sweep"
    proc = cli("pyro_bnn.train", "-m", *UCI, f"data.root={tmp_path / 'uci'}", "inference.steps=30",
               "prior.scale=1,1e-30", "guide.init_scale=1e-31", "launcher=batched", f"hydra.sweep.dir={sweep}", *QUIET,
               cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "jobs [0, 1]: trained as one batch of 2 models" in proc.stdout + proc.stderr
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert (sweep / "0" / "metrics.json").is_file() and not (sweep / "1" / "metrics.json").exists()
    status = json.loads((sweep / "1" / "status.json").read_text())
    assert status["error"].startswith("FloatingPointError: the loss became inf in epoch 1: the hyperprior's NLL of the "
                                      "learned prior scales is not finite")


@pytest.mark.slow
def test_an_interrupted_batch_finishes_with_resume_true_as_if_never_stopped(tmp_path):
    """Ctrl-C while a batch trains leaves every job interrupted with its checkpoint; then one job is resumed alone,
    one loses its checkpoint (it runs again from the start), and the sweep's command plus resume=true finishes the
    rest: every job's metrics are those of a sweep never stopped (to float rounding: a job resumed in another batch
    sums in another order)."""
    write_uci(tmp_path / "uci", "toy", rows=80, splits=3)
    run = [*UCI[:2], "inference.steps=3000", "eval.num_samples=20", f"data.root={tmp_path / 'uci'}", "launcher=batched"]
    straight, sweep = tmp_path / "straight", tmp_path / "sweep"
    cli("pyro_bnn.train", "-m", *run, "data.split=0,1,2", f"hydra.sweep.dir={straight}", *QUIET, cwd=tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "pyro_bnn.train", "-m", *run, "data.split=0,1,2",
                             f"hydra.sweep.dir={sweep}", *QUIET], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not all((sweep / job / "checkpoint.pt").is_file() for job in "012") and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert f"finish it with the same command plus resume=true hydra.sweep.dir={sweep}" in err
    for job in "012":
        status = json.loads((sweep / job / "status.json").read_text())
        assert status["status"] == "interrupted" and "resume=true" in status["error"]
        assert (sweep / job / "checkpoint.pt").is_file() and not (sweep / job / "metrics.json").exists()
    cli("pyro_bnn.train", *run, "data.split=0", "resume=true", f"hydra.run.dir={sweep / '0'}", *QUIET, cwd=tmp_path)
    (sweep / "2" / "checkpoint.pt").unlink()
    finished = (sweep / "0" / "metrics.json").read_text()
    proc = cli("pyro_bnn.train", "-m", *run, "data.split=0,1,2", "resume=true", f"hydra.sweep.dir={sweep}",
               cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert "jobs [0]: finished earlier, left as they are" in output
    assert "jobs 1: from their checkpoints" in output and "jobs 2: from the start" in output
    assert (sweep / "0" / "metrics.json").read_text() == finished
    assert [r["status"] for r in csv.DictReader((sweep / "summary.csv").open())] == ["ok"] * 3
    for job in "012":
        ours, theirs = (json.loads((d / job / "metrics.json").read_text()) for d in (sweep, straight))
        assert ours["test"] == pytest.approx(theirs["test"], rel=1e-3), job
        assert not (sweep / job / "checkpoint.pt").exists() and not (sweep / job / "status.json").exists()


def test_a_sweep_resumed_elsewhere_or_with_other_overrides_is_refused_before_any_work(tmp_path):
    write_uci(tmp_path / "uci", "toy", rows=80, splits=2)
    run = [*UCI, f"data.root={tmp_path / 'uci'}", "launcher=batched", "inference.steps=5"]
    sweep = tmp_path / "sweep"
    out = cli("pyro_bnn.train", "-m", *run, "data.split=0,1", "resume=true", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
              check=False)
    assert out.returncode != 0 and "resume=true in a sweep finishes the sweep in hydra.sweep.dir, and" in out.stderr
    assert not sweep.exists()
    cli("pyro_bnn.train", "-m", *run, "data.split=0,1", f"hydra.sweep.dir={sweep}", *QUIET, cwd=tmp_path)
    before = sorted((p.relative_to(sweep).as_posix(), p.stat().st_mtime_ns) for p in sweep.rglob("*"))
    out = cli("pyro_bnn.train", "-m", *run, "data.split=0,1", "seed=3", "resume=true", f"hydra.sweep.dir={sweep}",
              cwd=tmp_path, check=False)
    assert out.returncode != 0 and "resume it with its own overrides (plus resume=true)" in out.stderr
    out = cli("pyro_bnn.train", "-m", *run, "data.split=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path, check=False)
    assert f"to finish that sweep, run its command again with resume=true hydra.sweep.dir={sweep}" in out.stderr
    assert sorted((p.relative_to(sweep).as_posix(), p.stat().st_mtime_ns) for p in sweep.rglob("*")) == before
    done = cli("pyro_bnn.train", "-m", *run, "data.split=0,1", "resume=true", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert "jobs [0, 1]: finished earlier, left as they are" in done.stdout + done.stderr


def test_the_launcher_takes_each_composition_the_sweeper_made_once_in_order_and_composes_the_rest():
    from pyro_bnn.app.batched import remember_compositions

    class Loader:
        made = 0

        def load_sweep_config(self, master, overrides):
            Loader.made += 1
            return {"overrides": overrides, "made": Loader.made}

    loader, master = Loader(), object()
    kept = remember_compositions(loader)
    checked = [loader.load_sweep_config(master, job) for job in (["seed=1"], ["seed=1"], ["seed=2"])]  # the sweeper's
    taken = [kept.take(master, job) for job in (["seed=1"], ["seed=2"], ["seed=1"])]
    assert [c["made"] for c in taken] == [1, 3, 2] and Loader.made == 3  # a job listed twice: two configs, no more
    assert taken[0] is checked[0] and taken[2] is checked[1]
    assert kept.take(master, ["seed=1"])["made"] == 4 and kept.take(object(), ["seed=2"])["made"] == 5  # none kept


def test_a_sweep_that_lists_a_job_twice_runs_it_twice_each_in_its_own_dir(tmp_path):
    write_uci(tmp_path / "uci", "toy", rows=80, splits=1)
    sweep = tmp_path / "sweep"
    cli("pyro_bnn.train", "-m", *UCI, f"data.root={tmp_path / 'uci'}", "inference.steps=30", "seed=1,1",
        "launcher=batched", f"hydra.sweep.dir={sweep}", *QUIET, cwd=tmp_path)
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(r["job"], r["status"]) for r in rows] == [("0", "ok"), ("1", "ok")]
    first, second = (json.loads((sweep / job / "metrics.json").read_text())["test"] for job in ("0", "1"))
    assert first == second  # one seed, one config: the same numbers, in a batch as alone


def test_jobs_whose_training_sets_differ_in_size_train_in_one_batch_per_size(tmp_path):
    write_uci(tmp_path / "uci", "toy", rows=80, splits=3)
    train_1 = tmp_path / "uci" / "toy" / "data" / "index_train_1.txt"
    train_1.write_text("".join(train_1.read_text().splitlines(keepends=True)[:50]))  # 50 of its 64 rows
    sweep = tmp_path / "sweep"
    proc = cli("pyro_bnn.train", "-m", *UCI, f"data.root={tmp_path / 'uci'}", "inference.steps=30", "data.split=0,1,2",
               "launcher=batched", f"hydra.sweep.dir={sweep}", *QUIET, cwd=tmp_path)
    said = proc.stdout + proc.stderr
    assert "jobs 0, 2: 64 training examples, from the start" in said and "jobs 1: 50 training examples" in said
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert [json.loads((sweep / j / "metrics.json").read_text())["data"]["num_train"] for j in "012"] == [64, 50, 64]


def test_digits_splits_train_as_one_batch_each_job_on_its_own_split(tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli("pyro_bnn.train", "-m", *TINY, "data.split_seed=0,1", "launcher=batched", f"hydra.sweep.dir={sweep}",
               cwd=tmp_path)
    assert "jobs [0, 1]: trained as one batch of 2 models" in proc.stdout + proc.stderr
    evaluated = cli("pyro_bnn.app.evaluate", f"run_dir={sweep / '1'}", cwd=tmp_path)
    assert json.loads(evaluated.stdout) == json.loads((sweep / "1" / "metrics.json").read_text())["test"]
    assert "data.split_seed=1" in (sweep / "1" / ".hydra" / "overrides.yaml").read_text().replace("- ", "")


def test_a_batchs_results_are_written_in_forks_and_a_fork_that_fails_has_its_part_done_here():
    import os

    from pyro_bnn.app.batched import in_processes

    here = os.getpid()
    results = in_processes([(key, lambda key=key: (key * 10, os.getpid())) for key in range(5)], processes=2)
    assert sorted(results) == list(range(5)) and [value for value, _ in results.values()] == [0, 10, 20, 30, 40]
    assert {pid for _, pid in results.values()} - {here}  # some were done in a fork
    assert all(pid == here for key, (_, pid) in results.items() if key % 2 == 0)  # this process's part: every other

    def only_here(key):
        if os.getpid() != here:
            raise RuntimeError("a fork that fails")
        return key

    assert in_processes([(key, lambda key=key: only_here(key)) for key in range(4)], processes=2) == {
        key: key for key in range(4)}
