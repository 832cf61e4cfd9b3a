"""Data-parallel SVI: 2 CPU processes (torchrun, gloo) train the posterior one process trains."""

import json
import sys

import pytest
import torch
from torch.utils.data import TensorDataset

from helpers import ROOT, cli
from pyro_bnn import make_loader
from pyro_bnn.app.summarize import job_row
from pyro_bnn.objectives.elbo import StepRecord
from pyro_bnn.training.loss_monitor import LossMonitor

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(*args, cwd=ROOT):
    import subprocess

    proc = subprocess.run([*TORCHRUN, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_processes_give_the_loss_and_gradients_of_one_process_on_the_whole_batch(tmp_path):
    torchrun(ROOT / "tests" / "training" / "distributed_step.py", tmp_path / "result.json")
    result = json.loads((tmp_path / "result.json").read_text())
    # float32 sums in another order: gradients within 1e-5 of their largest entry, losses within 1e-6
    assert result["grad_max_abs_diff"] <= 1e-5 * result["grad_max_abs"]
    assert result["dist_loss"] == pytest.approx(result["loss"], rel=1e-6)
    assert result["dist_kl"] == pytest.approx(result["kl"], rel=1e-6)  # the KL counted once, not twice
    for estimator in ("shared", "local_reparameterization", "flipout"):
        single, distributed = result[f"history_{estimator}"]
        assert distributed == pytest.approx(single, rel=1e-5), estimator  # two epochs of fit, shuffled shards


@pytest.mark.slow
def test_a_two_process_run_writes_the_files_of_a_one_process_run(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    cli("pyro_bnn.train", "+experiment=debug", f"hydra.run.dir={one}")  # the default per-example estimator
    torchrun("-m", "pyro_bnn.train", "+experiment=debug", f"hydra.run.dir={two}")
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert b["test"] == pytest.approx(a["test"], rel=1e-4, abs=1e-6)
    assert b["train"]["loss"] == pytest.approx(a["train"]["loss"], rel=1e-5)
    assert (a["environment"]["world_size"], b["environment"]["world_size"]) == (1, 2)  # the record says how it ran
    assert b["environment"]["backend"] == "gloo" and "world_size 2, backend gloo" in (two / "train.log").read_text()
    row = job_row(two)
    assert (row["world_size"], row["device"]) == (2, "cpu")  # and the sweep summary shows it


def test_the_shards_of_a_batch_are_the_batch():
    data = TensorDataset(torch.arange(21.0)[:, None], torch.arange(21))
    whole = [y.tolist() for _, y in make_loader(data, 8, shuffle=True, seed=3)]
    shards = [[y.tolist() for _, y in make_loader(data, 8, shuffle=True, seed=3, rank=r, world_size=2)] for r in (0, 1)]
    assert [a + b for a, b in zip(*shards)] == whole  # contiguous parts, the same order, every epoch's batches
    assert [len(b) for b in shards[0]] == [4, 4, 2] and [len(b) for b in shards[1]] == [4, 4, 3]
    with pytest.raises(ValueError, match="a batch of 1 examples cannot be shared by 2 processes"):
        make_loader(TensorDataset(torch.zeros(17, 1), torch.zeros(17)), 8, rank=0, world_size=2)


def test_the_loss_is_read_every_few_steps_and_the_first_bad_step_is_named():
    monitor = LossMonitor(check_every=25)
    good = StepRecord.of({"loss": torch.tensor(10.0), "nll": torch.tensor(4.0), "kl": torch.tensor(6.0)})
    bad = StepRecord.of({"loss": torch.tensor(float("nan")), "nll": torch.tensor(float("nan")), "kl": torch.tensor(6.0)})
    x = torch.zeros(2, 3)
    for step, record in enumerate([good, good, good, bad, bad]):
        monitor.add(0, step, record, x)  # no check yet: nothing read on the host
    with pytest.raises(FloatingPointError, match=r"the loss became nan at epoch 1, step 4: the NLL is not finite"):
        monitor.check()
    monitor = LossMonitor(check_every=2)
    monitor.add(0, 0, good, x)
    monitor.add(0, 1, good, x)  # checked: the first step is the reference
    monitor.add(1, 0, StepRecord.of({**good.as_dict(), "loss": torch.tensor(2e5), "nll": torch.tensor(2e5)}), x)
    with pytest.raises(FloatingPointError, match=r"the loss exploded to 2e\+05 at epoch 2, step 1 \(it was 10 at the "
                                                 r"first step; the NLL grew most\)"):
        monitor.check()


@pytest.mark.slow
def test_a_two_process_run_stopped_by_sigterm_resumes_to_the_uninterrupted_result(tmp_path):
    import signal
    import subprocess
    import time

    run = ["-m", "pyro_bnn.train", "+experiment=debug", "inference.epochs=30"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    torchrun(*run, f"hydra.run.dir={straight}")
    proc = subprocess.Popen([*TORCHRUN, *run, f"hydra.run.dir={stopped}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (stopped / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes: they stop at the same step
    proc.wait(timeout=120)
    assert json.loads((stopped / "status.json").read_text())["status"] == "interrupted"
    torchrun(*run, "resume=true", f"hydra.run.dir={stopped}")
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (straight, stopped))
    assert b["test"] == a["test"] and b["train"] == a["train"]
    assert not (stopped / "status.json").exists()
