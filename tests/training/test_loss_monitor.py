"""The loss monitor: it names the step and the term that went bad, and reads the device every few steps only."""

import math

import pytest
import torch

from pyro_bnn.objectives.elbo import StepRecord
from pyro_bnn.training.loss_monitor import EXPLOSION, LossMonitor


def record(loss, nll=None, kl=0.0, **layers):
    nll = loss - kl if nll is None else nll
    return StepRecord.of({"loss": torch.tensor(loss), "nll": torch.tensor(nll), "kl": torch.tensor(kl),
                          **{f"kl.{k}": torch.tensor(v) for k, v in layers.items()}})


def test_an_exploding_loss_is_named_with_its_step_and_the_term_that_grew():
    monitor = LossMonitor(check_every=10)
    monitor.add(0, 0, record(10.0, kl=5.0), torch.zeros(1))
    monitor.add(0, 1, record(10.0 * EXPLOSION * 2, kl=5.0), torch.zeros(1))
    with pytest.raises(FloatingPointError, match="exploded to .* at epoch 1, step 2 .* the NLL grew most"):
        monitor.check()


def test_a_nan_kl_names_its_layer_and_nan_inputs_are_named_first():
    monitor = LossMonitor(check_every=10)
    monitor.add(0, 0, record(1.0, **{"net.3": 0.0}), torch.zeros(1))  # every step records the same terms
    monitor.add(0, 1, record(math.nan, nll=1.0, kl=math.nan, **{"net.3": math.nan}), torch.zeros(1))
    with pytest.raises(FloatingPointError, match=r"the KL of layer\(s\) \['net.3'\] is not finite"):
        monitor.check()
    monitor.add(1, 4, record(math.nan, **{"net.3": 0.0}), torch.tensor([math.inf]))
    with pytest.raises(FloatingPointError, match="inputs x of the batch at epoch 2, step 5 hold NaN or inf"):
        monitor.check()


def test_steps_are_checked_every_check_every_steps_and_a_falling_loss_never_fails():
    monitor = LossMonitor(check_every=3)
    for step in range(2):
        monitor.add(0, step, record(100.0 / (step + 1)), torch.zeros(1))
    assert monitor.first is None  # nothing read from the device yet
    monitor.add(0, 2, record(1.0), torch.zeros(1))
    assert monitor.first["loss"] == 100.0  # the third step checked the three
    monitor.add(0, 3, record(math.nan), torch.zeros(1))  # kept, not checked: no error yet
    monitor.add(0, 4, record(1.0), torch.zeros(1))
    with pytest.raises(FloatingPointError, match="epoch 1, step 4"):
        monitor.add(0, 5, record(1.0), torch.zeros(1))
    monitor.check()  # the steps checked are forgotten: nothing left to fail
