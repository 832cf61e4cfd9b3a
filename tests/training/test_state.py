"""The training state: a snapshot taken mid-epoch and restored replays the same batches and noise."""

import torch
from torch import nn

from pyro_bnn import make_loader
from pyro_bnn.objectives.elbo import StepRecord
from pyro_bnn.training.state import TrainingState


def state(loader):
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    modules = {"model": model, "optimizer": optimizer}
    return TrainingState(modules, loader, torch.device("cpu"))


def run_epoch(run, loader, epoch, stop_at=None):
    """The epoch's ``(step, first x, noise)``, stopping (with a snapshot) after ``stop_at`` steps."""
    seen = []
    for step, x, _ in run.batches(epoch, loader):
        if step == stop_at:
            return seen, run.snapshot()
        seen.append((step, float(x[0]), float(torch.randn(()))))
        run.add(StepRecord.of({"loss": torch.tensor(float(step))}))
    return seen, None


def test_a_restored_state_resumes_the_interrupted_epoch_exactly():
    data = torch.utils.data.TensorDataset(torch.arange(20.0).reshape(-1, 1), torch.zeros(20))
    torch.manual_seed(0)
    loader = make_loader(data, 4, shuffle=True, seed=1)
    whole, _ = run_epoch(state(loader), loader, 0)
    torch.manual_seed(0)
    loader = make_loader(data, 4, shuffle=True, seed=1)
    first, saved = run_epoch(state(loader), loader, 0, stop_at=2)
    torch.manual_seed(123)  # whatever ran in between
    other_loader = make_loader(data, 4, shuffle=True, seed=99)  # a new process: its own loader and generator
    resumed_run = state(other_loader)
    resumed_run.restore(saved)
    rest, _ = run_epoch(resumed_run, other_loader, 0)
    assert [step for step, _, _ in rest] == [2, 3, 4] and first + rest == whole


def test_an_epoch_ends_with_the_means_of_its_steps():
    loader = [(torch.zeros(2, 1), torch.zeros(2))] * 4
    run = state(loader)
    for step, _, _ in run.batches(0, loader):
        run.add(StepRecord.of({"loss": torch.tensor(float(step)), "kl": torch.tensor(2.0)}))
    record = run.end_epoch(4, {"kl_weight": 1.0})
    assert (record["epoch"], record["loss"], record["kl"], record["kl_weight"]) == (1, 1.5, 2.0, 1.0)
    assert run.history == [record] and (run.epoch, run.step) == (1, 0)


def test_a_state_snapshotted_at_an_epochs_end_resumes_the_next_epoch_exactly():
    data = torch.utils.data.TensorDataset(torch.arange(20.0).reshape(-1, 1), torch.zeros(20))
    torch.manual_seed(0)
    loader = make_loader(data, 4, shuffle=True, seed=1)
    run = state(loader)
    run_epoch(run, loader, 0)
    run.end_epoch(5, {})
    saved = run.snapshot()
    expected, _ = run_epoch(run, loader, 1)
    torch.manual_seed(123)  # a new process: other random state, its own loader and generator
    other_loader = make_loader(data, 4, shuffle=True, seed=99)
    resumed_run = state(other_loader)
    resumed_run.restore(saved)
    resumed, _ = run_epoch(resumed_run, other_loader, 1)
    assert resumed == expected
