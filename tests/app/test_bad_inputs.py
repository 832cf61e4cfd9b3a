"""The table of tests/bad_inputs.py (and docs/bad_inputs.md): each bad input gets its one-line message.

The CLI cases run in-process here (the entry points' own functions, the message they print after "error: "); the
slow test runs every one through the real command, checking one line, no traceback, and nothing written in the repo.
"""

import math
import re
import shlex
import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn
from torch.utils.data import TensorDataset

from bad_inputs import CLI, LIBRARY
from helpers import ROOT, cli, last_line, small_mlp, train_in_process, write_uci
from pyro_bnn import (
    BayesianCNN,
    BayesianMLP,
    Gaussian,
    HeteroscedasticGaussian,
    KLWeight,
    MeanFieldELBO,
    NormalPrior,
    Schedule,
    StudentTPrior,
    auto_lowrank,
    auto_normal,
    evaluate,
    fit,
    load_data,
    load_posterior,
    make_loader,
    pretrained_weights,
    save_posterior,
    to_bayesian,
)
from pyro_bnn.app import explain, summarize
from pyro_bnn.app.evaluate import check_run_dir_argument, evaluate_run
from pyro_bnn.app.schema import CONF_DIR
from pyro_bnn.model.priors import MopedPrior


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train_in_process(run, "+experiment=debug")
    tmp = tmp_path_factory.mktemp("tmp")
    (tmp / "a_file").write_text("not a directory")
    (tmp / "truncated").mkdir()
    (tmp / "truncated" / "posterior.pt").write_bytes((run / "posterior.pt").read_bytes()[:100])
    _bad_uci_sets(tmp / "uci")
    (tmp / "failed").mkdir()  # a run that failed before its first checkpoint
    (tmp / "failed" / "status.json").write_text('{"status": "failed", "error": "ValueError: ..."}')
    return {"run": run, "tmp": tmp}


def _bad_uci_sets(root):
    """Data sets in the UCI layout under ``root``, one thing wrong with each but ``toy``."""
    for name in ("toy", "leak", "overlap", "zero_splits", "one_row", "fifty"):
        write_uci(root, name)
    (root / "leak" / "data" / "index_features.txt").write_text("0\n1\n3\n")
    (root / "overlap" / "data" / "index_test_0.txt").write_text(
        (root / "overlap" / "data" / "index_test_0.txt").read_text() + "".join(
            (root / "overlap" / "data" / "index_train_0.txt").read_text().splitlines(keepends=True)[:2]))
    (root / "zero_splits" / "data" / "n_splits.txt").write_text("0\n")
    (root / "one_row" / "data" / "index_train_0.txt").write_text("5\n")
    (root / "fifty" / "data" / "n_hidden.txt").write_text("fifty\n")


def _arguments(arguments: str, dirs) -> list:
    return shlex.split(arguments.format(**dirs))


def _in_process(module: str, argv: list, tmp, capsys) -> str:
    """The message the entry point ends with, from its functions (no subprocess)."""
    if module == "pyro_bnn.train":
        hydra = dict(a.split("=", 1) for a in argv if a.startswith("hydra."))
        overrides = [a for a in argv if not a.startswith("hydra.")]
        with pytest.raises(Exception) as info:
            preset = [] if any(o.startswith("+experiment=") for o in overrides) else ["+experiment=debug"]
            train_in_process(hydra.get("hydra.run.dir", tmp / "out"), *preset, *overrides)
        return str(info.value)
    if module == "pyro_bnn.app.evaluate":
        problem = check_run_dir_argument(argv)
        if problem:
            return problem
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="evaluate", overrides=argv)
        with pytest.raises(Exception) as info:
            evaluate_run(cfg.run_dir, cfg.dataset, cfg.num_samples, cfg.seed, cfg.device)
        return str(info.value)
    entry = {"pyro_bnn.app.explain": explain.main, "pyro_bnn.app.summarize": summarize.main}[module]
    with pytest.raises(SystemExit):
        entry(argv)
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("module, arguments, message", CLI, ids=[f"{m} {a}" for m, a, _ in CLI])
def test_each_bad_cli_input_gets_its_message(dirs, module, arguments, message, capsys, monkeypatch):
    monkeypatch.chdir(dirs["tmp"])  # nothing lands in the repository
    assert message in _in_process(module, _arguments(arguments, dirs), dirs["tmp"], capsys)


@pytest.mark.slow
@pytest.mark.parametrize("module, arguments, message", CLI, ids=[f"{m} {a}" for m, a, _ in CLI])
def test_each_bad_cli_input_stops_the_real_command_with_one_line(dirs, module, arguments, message):
    before = sorted((ROOT / "outputs").iterdir()) if (ROOT / "outputs").is_dir() else []
    argv = _arguments(arguments, dirs)
    if module == "pyro_bnn.train" and not any(a.startswith("hydra.run.dir") for a in argv):
        preset = [] if any(a.startswith("+experiment=") for a in argv) else ["+experiment=debug"]
        argv += [*preset, f"hydra.run.dir={tempfile.mkdtemp(dir=dirs['tmp'])}/run"]  # a fresh dir each
    proc = cli(module, *argv, "hydra.job_logging.root.level=WARNING" if "pyro_bnn.app" not in module else "",
               check=False) if module == "pyro_bnn.train" else cli(module, *argv, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert last_line(proc).startswith("error: ") and message in last_line(proc)
    assert (sorted((ROOT / "outputs").iterdir()) if (ROOT / "outputs").is_dir() else []) == before
    assert not (dirs["tmp"] / "nonexistent").exists()  # a wrong run_dir is not created


def _library_case(case: str, small_digits):
    x, y = small_digits[0].tensors[0][:100], small_digits[0].tensors[1][:100]
    loader = lambda xs=x, ys=y: make_loader(TensorDataset(xs, ys), 50)  # noqa: E731
    model = small_mlp()
    guide = auto_normal(model)
    calls = {
        "MeanFieldELBO(num_particles=0)": lambda: fit(model, guide, loader(), objective=MeanFieldELBO(num_particles=0)),
        "Schedule(kl_weight='0.5')": lambda: fit(model, guide, loader(), Schedule(kl_weight="0.5")),
        "fit(empty loader)": lambda: fit(model, guide, loader(x[:0], y[:0])),
        "fit(generator)": lambda: fit(model, guide, (b for b in loader())),
        "fit(labels of shape (B, 1))": lambda: fit(model, guide, loader(ys=y[:, None])),
        "fit(label 12 of 10 classes)": lambda: fit(model, guide, loader(ys=y + 3)),
        "fit(label 12 in batch 2 only)": lambda: fit(model, guide, loader(ys=torch.cat([y[:50], y[50:] + 3]))),
        "fit(label -1)": lambda: fit(model, guide, loader(ys=y - 1)),
        "fit(inputs of another shape)": lambda: fit(model, guide, loader(xs=x.reshape(100, 2, 32)[:, 0])),
        "to_bayesian(a 64-input net, in_shape=(32,))": lambda: to_bayesian(nn.Sequential(nn.Linear(64, 10)), (32,)),
        "to_bayesian(a 2-output net, Gaussian())": lambda: to_bayesian(nn.Sequential(nn.Linear(3, 2)), (3,),
                                                                       likelihood=Gaussian()),
        "to_bayesian(likelihood='gaussian')": lambda: to_bayesian(nn.Sequential(nn.Linear(3, 1)), (3,),
                                                                  likelihood="gaussian"),
        "to_bayesian(a 1-output net, classification)": lambda: to_bayesian(nn.Sequential(nn.Linear(3, 1)), (3,)),
        "fit(float64 inputs)": lambda: fit(model, guide, loader(xs=x.double())),
        "fit(uint8 inputs)": lambda: fit(model, guide, loader(xs=(x * 16).to(torch.uint8))),
        "fit(NaN inputs)": lambda: fit(model, guide, loader(xs=torch.full_like(x, math.nan))),
        "fit(lr=8: the loss explodes)": lambda: fit(model, guide, loader(), Schedule(epochs=20, lr=8.0)),
        "BayesianCNN(num_classes=0)": lambda: BayesianCNN((1, 8, 8), 0),
        "BayesianCNN(num_classes=-3)": lambda: BayesianCNN((1, 8, 8), -3),
        "BayesianCNN(prior='normal')": lambda: BayesianCNN((1, 8, 8), 10, prior="normal"),
        "evaluate(NaN inputs)": lambda: evaluate(model, guide, loader(xs=torch.full_like(x, math.nan))),
        "evaluate(label 12 of 10 classes)": lambda: evaluate(model, guide, loader(ys=y + 3), num_samples=2),
        "evaluate(float labels)": lambda: evaluate(model, guide, loader(ys=y.float()), num_samples=2),
        "evaluate(num_samples=2.5)": lambda: evaluate(model, guide, loader(), num_samples=2.5),
        "evaluate(a broken posterior)": lambda: _evaluate_broken(model, guide, loader()),
        "load_data('mnist', download=True), offline": _download_offline,
        "HeteroscedasticGaussian(min_scale=0)": lambda: HeteroscedasticGaussian(min_scale=0),
        "BayesianMLP(3, 1, likelihood=HeteroscedasticGaussian())":
            lambda: BayesianMLP(3, 1, likelihood=HeteroscedasticGaussian()),
        "BayesianMLP(64, 10, likelihood=Gaussian())": lambda: BayesianMLP(64, 10, likelihood=Gaussian()),
        "load_data('uci', name='yacht'), not there": lambda: load_data("uci", root="/nonexistent/data", name="yacht"),
        "fit(num_particles=100000)": lambda: fit(model, guide, loader(), objective=MeanFieldELBO(num_particles=100000)),
        "auto_lowrank(rank=10**6)": lambda: auto_lowrank(model, rank=10**6),
        "auto_lowrank(rank=50) of a model of 4 weights": lambda: auto_lowrank(
            BayesianMLP(1, 2, hidden=(), likelihood=HeteroscedasticGaussian()), rank=50),
        "KLWeight(warmup_epochs=1.5)": lambda: KLWeight(warmup_epochs=1.5),
        "KLWeight('0.5')": lambda: KLWeight("0.5"),
        "make_loader(batch_size=2.5)": lambda: make_loader(TensorDataset(x, y), 2.5),
        "make_loader(world_size=0)": lambda: make_loader(TensorDataset(x, y), 10, world_size=0),
        "make_loader(rank=1, world_size=1)": lambda: make_loader(TensorDataset(x, y), 10, rank=1),
        "BayesianMLP(hidden=(8.7,))": lambda: BayesianMLP(64, 10, hidden=(8.7,)),
        "BayesianMLP(hidden=8)": lambda: BayesianMLP(64, 10, hidden=8),
        "BayesianMLP(hidden=(0,))": lambda: BayesianMLP(64, 10, hidden=(0,)),
        "BayesianMLP(in_shape=-3)": lambda: BayesianMLP(-3, 10),
        "BayesianMLP(num_data=2.7)": lambda: BayesianMLP(64, 10, num_data=2.7),
        "NormalPrior(fan_in='no')": lambda: NormalPrior(fan_in="no"),
        "auto_normal(init_loc={'net.1.wieght': ...})": lambda: auto_normal(model, init_loc={"net.1.wieght": torch.zeros(16, 64)}),
        "load_posterior(into a model with another prior)": lambda: _load_into_another_prior(model, guide, loader()),
        "load_posterior(an MLP's file into a CNN)": lambda: _load_saved(
            model, guide, loader(), lambda: BayesianCNN((1, 16, 16), 10)),
        "load_posterior(a classifier's file into a Gaussian model)": lambda: _load_saved(
            model, guide, loader(), lambda: BayesianMLP((1, 8, 8), 1, likelihood=Gaussian())),
        "load_posterior(no file)": lambda: load_posterior("/nonexistent/posterior.pt", model, guide),
        "save_posterior(a guide never run)": lambda: save_posterior(
            "/nonexistent/posterior.pt", model, guide, {"in_shape": [1, 8, 8], "task": "classification"}),
        "save_posterior(data={'name': 'x'})": lambda: save_posterior("/nonexistent/p.pt", model, guide, {"name": "x"}),
        "save_posterior(a directory)": lambda: _save_into_a_directory(model, guide, loader()),
        "StudentTPrior(df=inf)": lambda: StudentTPrior(df=math.inf),
        "NormalPrior(loc=nan)": lambda: NormalPrior(loc=math.nan),
        "BayesianMLP(bayesian=['net.4'])": lambda: BayesianMLP(64, 10, hidden=(8,), bayesian=["net.4"]),
        "BayesianMLP(bayesian=['net.2']): an activation": lambda: BayesianMLP(64, 10, hidden=(8,), bayesian=["net.2"]),
        "BayesianMLP(bayesian='first')": lambda: BayesianMLP(64, 10, hidden=(8,), bayesian="first"),
        "to_bayesian(a net without nn.Linear, bayesian='last')": lambda: to_bayesian(
            nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 8, 8), bayesian="last"),
        "auto_normal(init_loc=pretrained_weights(net)) of a Bayesian last layer": _init_a_last_layer_from_all,
        "to_bayesian(a network with tied weights)": _tied,
        "MopedPrior(a NaN weight)": lambda: MopedPrior({"net.1.weight": torch.full((8, 64), math.nan)}),
        "MopedPrior([1, 2])": lambda: MopedPrior([1, 2]),
        "evaluate(numpy batches)": lambda: evaluate(model, guide, [(x.numpy(), y.numpy())], num_samples=2),
        "evaluate(dict batches)": lambda: evaluate(model, guide, [{"x": x, "y": y}], num_samples=2),
        "evaluate((x, y, y) batches)": lambda: evaluate(model, guide, [(x, y, y)], num_samples=2),
        "evaluate(float64 inputs)": lambda: evaluate(model, guide, [(x.double(), y)], num_samples=2),
        "BayesianMLP(bayesian=lambda name: True)": lambda: BayesianMLP(64, 10, bayesian=lambda name: True),
        "HeteroscedasticGaussian('0.01')": lambda: HeteroscedasticGaussian("0.01"),
        "fit(a TensorDataset, not a loader)": lambda: fit(model, guide, TensorDataset(x, y)),
        "make_loader(numpy arrays)": lambda: make_loader((x.numpy(), y.numpy()), 10),
        "fit(a NaN target in batch 2)": lambda: _fit_a_nan_target(x),
        "load_data('uci', split='1')": _load_uci_split_as_text,
    }
    return calls[case], guide


def _tied():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    net[2].weight = net[0].weight
    return to_bayesian(net, (4,))


def _fit_a_nan_target(x):
    targets = torch.randn(len(x))
    targets[60] = math.nan
    model = BayesianMLP((1, 8, 8), 1, hidden=(8,), likelihood=Gaussian(), num_data=len(x))
    fit(model, auto_normal(model), make_loader(TensorDataset(x, targets), 50), Schedule(epochs=1))


def _load_uci_split_as_text():
    with tempfile.TemporaryDirectory() as root:
        write_uci(Path(root), "toy")
        load_data("uci", root=root, name="toy", split="1")


def _init_a_last_layer_from_all():
    net = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
    return auto_normal(to_bayesian(net, (64,), bayesian="last"), init_loc=pretrained_weights(net))


def _download_offline():
    import torchvision

    def refuse(*args, **kwargs):  # what torchvision raises without a network (data=mnist data.download=true)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: <urlopen error [Errno -2] Name or "
                           "service not known>")

    original = torchvision.datasets.MNIST.__init__
    torchvision.datasets.MNIST.__init__ = refuse
    try:
        return load_data("mnist", root="/nonexistent/data", download=True)
    finally:
        torchvision.datasets.MNIST.__init__ = original


def _load_saved(model, guide, loader, build_other):
    fit(model, guide, loader, Schedule(epochs=1))
    with tempfile.TemporaryDirectory() as tmp:
        save_posterior(f"{tmp}/posterior.pt", model, guide, {"in_shape": [1, 8, 8], "task": "classification"})
        other = build_other()
        return load_posterior(f"{tmp}/posterior.pt", other, auto_normal(other))


def _save_into_a_directory(model, guide, loader):
    fit(model, guide, loader, Schedule(epochs=1))
    with tempfile.TemporaryDirectory() as tmp:
        return save_posterior(tmp, model, guide, {"in_shape": [1, 8, 8], "task": "classification"})


def _load_into_another_prior(model, guide, loader):
    import tempfile

    fit(model, guide, loader, Schedule(epochs=1))
    with tempfile.TemporaryDirectory() as tmp:
        save_posterior(f"{tmp}/posterior.pt", model, guide, {"in_shape": [1, 8, 8], "task": "classification"})
        other = small_mlp(scale=0.1)
        return load_posterior(f"{tmp}/posterior.pt", other, auto_normal(other))


def _evaluate_broken(model, guide, loader):
    fit(model, guide, loader, Schedule(epochs=1))
    with torch.no_grad():
        next(iter(guide.locs.parameters())).fill_(math.inf)  # what a diverged run leaves behind
    return evaluate(model, guide, loader, num_samples=4)


@pytest.mark.parametrize("case, message", LIBRARY, ids=[c for c, _ in LIBRARY])
def test_each_bad_library_call_gets_its_message(small_digits, case, message):
    call, guide = _library_case(case, small_digits)
    with pytest.raises((ValueError, TypeError, FloatingPointError, OSError)) as info:
        call()
    assert message in str(info.value)
    if case.startswith("fit(") and "explodes" not in case and "batch 2" not in case:
        assert guide.prototype_trace is None  # refused before any work: the guide was not even set up


def test_the_docs_table_is_this_table():
    doc = (ROOT / "docs" / "bad_inputs.md").read_text()
    rows = re.findall(r"^\| `(.*?)` \| (.*?) \|$", doc, re.M)
    cli_rows = [(f"python -m {m} {a}".strip(), message) for m, a, message in CLI]
    assert rows == [(c, f"`{m}`") for c, m in cli_rows] + [(c, f"`{m}`") for c, m in LIBRARY]
