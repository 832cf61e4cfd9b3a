"""The per-epoch report: log lines always, a tqdm bar only on a terminal."""

import io
import logging

import pytest

from pyro_bnn.app import progress
from pyro_bnn.app.progress import EpochReporter

RECORDS = [{"epoch": e, "loss": 100.0 / e, "nll": 60.0 / e, "kl": 40.0 / e, "kl.net.0": 40.0 / e} for e in (1, 2, 3)]


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream, asked, shown", [(Terminal(), True, True), (io.StringIO(), True, False),
                                                   (Terminal(), False, False)])
def test_the_bar_shows_only_on_a_terminal_when_asked(monkeypatch, caplog, stream, asked, shown):
    monkeypatch.setattr(progress.sys, "stderr", stream)
    with caplog.at_level(logging.INFO, logger="pyro_bnn.app.progress"), EpochReporter(3, progress=asked) as reporter:
        for record in RECORDS:
            reporter(record)
    assert [r.getMessage() for r in caplog.records] == [
        "epoch 1: loss 100.0 nll 60.0 kl 40.0", "epoch 2: loss 50.0 nll 30.0 kl 20.0", "epoch 3: loss 33.3 nll 20.0 kl 13.3"]
    text = stream.getvalue()
    assert ("3/3" in text and "loss=33.3" in text and "kl=13.3" in text) == shown
    assert shown or text == ""


def test_missing_tensorboard_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ImportError, match=r"pip install 'pyro_bnn\[tensorboard\]'"):
        progress.require_tensorboard()


def test_a_long_run_logs_about_twenty_epochs(caplog):
    with caplog.at_level(logging.INFO, logger="pyro_bnn.app.progress"), EpochReporter(1000) as reporter:
        for e in range(1, 1001):
            reporter({"epoch": e, "loss": 1.0, "nll": 0.5, "kl": 0.5})
    epochs = [int(r.getMessage().split(":")[0].split()[1]) for r in caplog.records]
    assert epochs[0] == 1 and epochs[-1] == 1000 and len(epochs) == 21
