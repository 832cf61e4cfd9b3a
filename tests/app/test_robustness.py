"""Runs that survive: interruption and resume, NaN stops, bad inputs with one clear line."""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyro
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import TensorDataset

from helpers import QUIET, ROOT, cli, last_line, small_mlp
from pyro_bnn import Hooks, Schedule, auto_normal, fit, make_loader
from pyro_bnn.app.run_dir import CheckpointWriter, load_checkpoint
from pyro_bnn.io.posterior import read_posterior
from pyro_bnn.training.loop import TrainingInterrupted

SHORT = ["+experiment=debug", "inference.epochs=30", "model.channels=[8]", "model.hidden=[32]", *QUIET]


def without_time(history):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


def train_small(small_digits, hooks=None, state=None):
    pyro.set_rng_seed(0)
    model = small_mlp()
    guide = auto_normal(model, init_scale=1e-2)
    loader = make_loader(small_digits[0], 64, shuffle=True, seed=0)
    return model, guide, fit(model, guide, loader, Schedule(epochs=4, lr=1e-2), hooks=hooks, state=state)


def test_resuming_mid_epoch_gives_the_uninterrupted_result(small_digits):
    _, guide, expected = train_small(small_digits)
    states = []
    calls = iter(range(1000))
    with pytest.raises(TrainingInterrupted, match="epoch 2, after step 3"):
        train_small(small_digits, Hooks(on_checkpoint=lambda saved: states.append(copy.deepcopy(saved)),
                                        should_stop=lambda: next(calls) == 8))
    assert [(s["epoch"], s["step"]) for s in states] == [(1, 0), (1, 3)]
    for saved in states:  # the checkpoint of an epoch's end (a periodic one: what a hard kill leaves), then the stop's
        torch.manual_seed(123)  # whatever happened in between
        _, resumed_guide, history = train_small(small_digits, state=saved)
        assert without_time(history) == without_time(expected)
        for (name, a), (_, b) in zip(guide.state_dict().items(), resumed_guide.state_dict().items()):
            assert torch.equal(a, b), name


def test_a_nan_stops_with_epoch_step_and_term_and_the_last_good_checkpoint_stays(small_digits):
    x, y = small_digits[0].tensors
    x = x.clone()
    x[200:] = float("nan")  # past the first batch (checked before training): found when the loss turns NaN
    model = small_mlp()
    guide = auto_normal(model)
    states = []
    with pytest.raises(FloatingPointError, match=r"the inputs x of the batch at epoch 1, step 4 hold NaN or inf values"):
        fit(model, guide, make_loader(TensorDataset(x, y), 64), Schedule(epochs=3),
            hooks=Hooks(on_checkpoint=states.append))
    assert states == []  # nothing half-done was handed out as a checkpoint
    model, guide = small_mlp(), auto_normal(small_mlp())
    states = []
    good = TensorDataset(*small_digits[0].tensors)
    fit(model, guide, make_loader(good, 64), Schedule(epochs=1), hooks=Hooks(on_checkpoint=states.append))
    assert [(s["epoch"], s["step"]) for s in states] == [(1, 0)]


@pytest.mark.slow
def test_sigterm_checkpoints_and_resume_finishes_like_an_uninterrupted_run(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    cli("pyro_bnn.train", *SHORT, f"hydra.run.dir={straight}")
    proc = subprocess.Popen([sys.executable, "-m", "pyro_bnn.train", *SHORT, f"hydra.run.dir={interrupted}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (interrupted / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Resume with the same overrides plus: resume=true" in stderr.strip().splitlines()[-1]
    assert json.loads((interrupted / "status.json").read_text())["status"] == "interrupted"
    assert (interrupted / "checkpoint.pt").is_file() and not (interrupted / "metrics.json").exists()
    cli("pyro_bnn.train", *SHORT, "resume=true", f"hydra.run.dir={interrupted}")
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((interrupted / "metrics.json").read_text())
    assert b["test"] == a["test"] and b["train"] == a["train"]
    assert not (interrupted / "checkpoint.pt").exists()  # removed once finished
    assert not (interrupted / "status.json").exists()  # no longer "interrupted": it finished


@pytest.mark.slow
def test_resume_after_a_hard_kill_at_a_periodic_checkpoint_finishes_like_an_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run = ["+experiment=debug", "inference.epochs=8", *QUIET]
    cli("pyro_bnn.train", *run, f"hydra.run.dir={straight}")
    proc = subprocess.Popen([sys.executable, "-m", "pyro_bnn.train", *run, f"hydra.run.dir={killed}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no handler runs, the periodic checkpoint is what is left
    proc.wait(timeout=60)
    saved = load_checkpoint(killed / "checkpoint.pt")["training"]
    assert not (killed / "metrics.json").exists() and saved["epoch"] < 8
    cli("pyro_bnn.train", *run, "resume=true", f"hydra.run.dir={killed}")
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert b["test"] == a["test"] and b["train"] == a["train"]
    history = [line.split(",")[:-1] for line in (straight / "history.csv").read_text().splitlines()]  # without time_s
    assert [line.split(",")[:-1] for line in (killed / "history.csv").read_text().splitlines()] == history


def snapshot(run_dir: Path) -> dict:
    """Every file under ``run_dir`` with its bytes."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_refused_commands_leave_a_finished_run_byte_identical(tmp_path):
    run_dir = tmp_path / "run"
    cli("pyro_bnn.train", "+experiment=debug", *QUIET, f"hydra.run.dir={run_dir}")
    before = snapshot(run_dir)
    out = cli("pyro_bnn.train", "+experiment=debug", "prior.scale=0.5", "resume=true", *QUIET,
              f"hydra.run.dir={run_dir}", check=False)
    assert out.returncode != 0 and "that run finished (metrics.json is there)" in last_line(out)
    assert snapshot(run_dir) == before
    out = cli("pyro_bnn.train", "+experiment=debug", *QUIET, f"hydra.run.dir={run_dir}", check=False)
    assert out.returncode != 0 and "already holds a run (metrics.json, posterior.pt, history.csv" in last_line(out)
    assert "that run finished: leave hydra.run.dir unset (or pass a fresh dir)" in last_line(out)  # not "resume"
    assert snapshot(run_dir) == before
    out = cli("pyro_bnn.app.evaluate", f"run_dir={run_dir}", "num_samples=5000000", check=False)
    assert out.returncode != 0 and "num_samples=5000000: use an integer from 1 to 10000" in last_line(out)
    assert snapshot(run_dir) == before  # no evaluate.log either


@pytest.mark.slow
def test_two_runs_started_together_into_one_dir_leave_it_consistent_and_one_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "pyro_bnn.train", "+experiment=debug", *QUIET, f"seed={seed}",
                               f"hydra.run.dir={run_dir}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for seed in (1, 2)]
    outs = [proc.communicate(timeout=300) for proc in procs]
    codes = [proc.returncode for proc in procs]
    assert sorted(codes) == [0, 1], outs
    refused = outs[codes.index(1)][1].strip().splitlines()[-1]
    assert refused.startswith("error: hydra.run.dir=") and ("is in use by another run" in refused
                                                             or "already holds a run" in refused), refused
    seed = (1, 2)[codes.index(0)]
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").seed == seed
    assert json.loads((run_dir / "metrics.json").read_text())["seed"] == seed
    log = (run_dir / "train.log").read_text()
    assert log.count("did not optimise the exact ELBO") == 1 and "error" not in log.lower()  # one run's log
    assert not list(run_dir.glob("*.tmp*")) and not (run_dir / "status.json").exists()


def test_a_dir_another_process_is_running_in_is_refused_before_anything_is_written(tmp_path):
    import fcntl

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    held = os.open(run_dir, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a run started there a moment earlier holds
    try:
        out = cli("pyro_bnn.train", "+experiment=debug", *QUIET, f"hydra.run.dir={run_dir}", check=False)
    finally:
        os.close(held)
    assert out.returncode == 1 and "is in use by another run started there now" in last_line(out)
    assert list(run_dir.iterdir()) == []


def test_temporary_files_have_names_no_other_process_picks(tmp_path):
    from pyro_bnn.io.files import replacing

    with replacing(tmp_path / "plot.png") as first, replacing(tmp_path / "plot.png") as second:
        assert first != second and first.suffix == ".png" and first.parent == tmp_path
        first.write_text("a")
        second.write_text("b")
    assert (tmp_path / "plot.png").read_text() == "a" and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


@pytest.mark.slow
def test_resume_with_another_config_names_the_keys(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "pyro_bnn.train", *SHORT, f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (run_dir / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT
    before = snapshot(run_dir)
    out = cli("pyro_bnn.train", *SHORT, "prior.scale=0.5", "resume=true", f"hydra.run.dir={run_dir}", check=False)
    assert "the config differs from the checkpoint's at prior.scale" in last_line(out)
    assert snapshot(run_dir) == before  # still the interrupted run, resumable with its own overrides
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"


def test_unreadable_and_mismatched_posteriors_are_refused(tmp_path):
    run_dir = tmp_path / "run"
    cli("pyro_bnn.train", "+experiment=debug", *QUIET, f"hydra.run.dir={run_dir}")
    posterior = run_dir / "posterior.pt"
    blob = torch.load(posterior, weights_only=True)
    blob["config"]["model"]["hidden"] = [17]
    torch.save(blob, tmp_path / "mismatched.pt")
    posterior.rename(tmp_path / "good.pt")
    (tmp_path / "mismatched.pt").rename(posterior)
    out = cli("pyro_bnn.app.evaluate", f"run_dir={run_dir}", check=False)
    assert "does not match the model and guide it was loaded into" in last_line(out)
    blob["format"] = "pyro_bnn.posterior/1"  # softplus^-1 scales: read as log-scales they would be wrong
    torch.save(blob, posterior)
    out = cli("pyro_bnn.app.evaluate", f"run_dir={run_dir}", check=False)
    assert "written by an older pyro_bnn" in last_line(out) and "train the run again" in last_line(out)
    posterior.write_bytes(b"\x00garbage")
    out = cli("pyro_bnn.app.evaluate", f"run_dir={run_dir}", check=False)
    assert "is not a readable pyro_bnn saved posterior" in last_line(out) and "Traceback" not in out.stderr
    posterior.unlink()
    out = cli("pyro_bnn.app.evaluate", f"run_dir={run_dir}", check=False)
    assert "no saved posterior at" in last_line(out)


def test_files_are_written_atomically(tmp_path, monkeypatch):
    from pyro_bnn.app import run_dir

    target = tmp_path / "metrics.json"
    run_dir.write_json(target, {"a": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        run_dir.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}  # the old file is intact, never half-written
    assert list(tmp_path.iterdir()) == [target]  # and no temporary file is left behind


class _Payload:
    """Unpickling this object would create a file: what a malicious checkpoint could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("loader", [read_posterior, load_checkpoint])
def test_loading_a_file_never_executes_code(tmp_path, loader):
    marker = tmp_path / "code_ran"
    torch.save({"format": "x", "payload": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="is not a readable pyro_bnn"):
        loader(tmp_path / "evil.pt")
    assert not marker.exists()


def test_json_files_are_strict_json(tmp_path):
    from pyro_bnn.app.run_dir import write_json

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    write_json(tmp_path / "a.json", {"max_r_hat": float("inf"), "nested": [float("nan"), 1.5, {"x": -float("inf")}]})
    assert json.loads((tmp_path / "a.json").read_text(), parse_constant=refuse) == \
        {"max_r_hat": None, "nested": [None, 1.5, {"x": None}]}


def test_metrics_record_the_environment_and_the_kl_weights_used(tmp_path):
    from helpers import train_in_process

    metrics = train_in_process(tmp_path / "run", "+experiment=debug", "inference.kl_warmup_epochs=2")
    env = metrics["environment"]
    assert env["world_size"] == 1 and env["device"] == "cpu" and env["threads"] == 1
    assert env["torch"] == torch.__version__ and env["pyro"] == pyro.__version__ and env["pyro_bnn"]
    used = metrics["kl_weight_used"]
    assert used["warmup_finished"] is True and used["first_epoch"] < used["last_epoch"] == metrics["kl_weight"]
    with pytest.raises(ValueError, match="inference.kl_warmup_epochs=100 is not allowed: a warm-up longer than the run"):
        train_in_process(tmp_path / "longer", "+experiment=debug", "inference.kl_warmup_epochs=100")  # before training
    assert not (tmp_path / "longer" / "history.csv").exists()


@pytest.mark.parametrize("epochs, warmup", [(3, 1), (7, 3)])
def test_a_warm_up_over_half_the_run_is_recorded_as_the_exact_elbo(tmp_path, epochs, warmup):
    from helpers import train_in_process

    metrics = train_in_process(tmp_path / "run", "+experiment=debug", "inference.kl_weight=1", f"inference.epochs={epochs}",
                               "inference.kl_warmup_fraction=0.5", "model.hidden=[4]", "model.channels=[2]")
    assert metrics["exact_elbo"] is True and metrics["kl_weight_used"]["warmup_epochs"] == warmup
    assert metrics["kl_weight_used"]["last_epoch"] == 1.0


@pytest.mark.slow
def test_a_second_signal_stops_a_long_step_at_once(tmp_path):
    """Steps of several seconds (a wide MLP on whole-data batches): the first SIGINT waits for the step's end, the
    second does not; the last epoch checkpointed stays. (Python runs a handler once for signals that arrive
    during one long C call, so the two are sent a second apart, as a user's two Ctrl-C are.)"""
    run_dir = tmp_path / "run"
    slow = ["+experiment=debug", "model=mlp", "model.hidden=[3000,3000]", "data.batch_size=1437", "inference.epochs=50",
            *QUIET, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([sys.executable, "-m", "pyro_bnn.train", *slow], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run_dir / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "a second signal stopped it in the middle of a step (the checkpoint holds the last epoch it wrote)" in \
        stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr
    assert load_checkpoint(run_dir / "checkpoint.pt")["training"]["step"] == 0  # an epoch's end, not a step's
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"


def test_ctrl_c_in_evaluate_is_one_line_and_writes_nothing(monkeypatch):
    from omegaconf import OmegaConf

    from pyro_bnn.app import evaluate as evaluate_app
    from pyro_bnn.app import rescore

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rescore, "evaluate_run", interrupted)
    cfg = OmegaConf.create({"run_dir": "run", "dataset": None, "num_samples": 1, "seed": 0, "device": "cpu"})
    with pytest.raises(SystemExit, match=r"^interrupted: nothing was written"):
        evaluate_app._evaluate_app(cfg)  # Hydra's main passes a given config straight to the function


def test_the_checkpoint_is_written_first_then_every_few_seconds_and_always_at_a_stop(tmp_path):
    path, stop = tmp_path / "checkpoint.pt", []
    write = CheckpointWriter(path, OmegaConf.create({"seed": 0}), {}, stopping=lambda: bool(stop), every_s=3600)
    write({"epoch": 1})
    write({"epoch": 2})  # within the interval: the file keeps epoch 1
    assert load_checkpoint(path)["training"] == {"epoch": 1}
    stop.append("SIGINT")
    write({"epoch": 2, "step": 5})
    assert load_checkpoint(path)["training"] == {"epoch": 2, "step": 5}
    often = CheckpointWriter(path, OmegaConf.create({"seed": 0}), {}, stopping=lambda: False, every_s=0.0)
    often({"epoch": 1})
    often({"epoch": 3})
    assert load_checkpoint(path)["training"] == {"epoch": 3}
