"""An epoch of :func:`pyro_bnn.fit` against a plain PyTorch epoch and against the bare fused steps.

The CNN 32c5-64c5-256-10 of ``step_time.py`` (or ``--model mlp``) on ``--examples`` random MNIST-shaped inputs,
batch 128, from the same :func:`pyro_bnn.make_loader`:

* ``plain epoch``: the network, cross-entropy, torch Adam, over the loader;
* ``bare steps``: the body of ``fit``'s step (its objective, backward, Adam) over the loader, nothing else;
* ``fit epoch``: ``fit(..., epochs=1)`` on a set-up model and guide (its records, loss checks, scheduler...).

Systems interleaved, ``--repeats`` times; medians and their ratios to the plain epoch (same run). Writes
``benchmarks/results/<date>-fit_overhead.txt``.

    python benchmarks/fit_overhead.py [--model cnn] [--examples 2560] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from pathlib import Path

import pyro
import torch
from common import cnn, mlp
from torch import nn
from torch.utils.data import TensorDataset

from pyro_bnn import (
    MeanFieldELBO,
    NormalPrior,
    Schedule,
    SVIStep,
    auto_normal,
    fit,
    make_loader,
    to_bayesian,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["mlp", "cnn"], default="cnn")
    parser.add_argument("--examples", type=int, default=2560)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    build = {"mlp": mlp, "cnn": cnn}[args.model]
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(args.examples, 1, 28, 28, generator=g),
                         torch.randint(0, 10, (args.examples,), generator=g))
    loader = make_loader(data, 128, shuffle=True, seed=0)
    pyro.set_rng_seed(0)

    net = build()
    adam = torch.optim.Adam(net.parameters(), lr=1e-3)

    def plain_epoch():
        for x, y in loader:
            adam.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(x), y).backward()
            adam.step()

    model = to_bayesian(build(), (1, 28, 28), prior=NormalPrior(1.0), num_data=args.examples)
    guide = auto_normal(model)
    svi = SVIStep(MeanFieldELBO(), Schedule(epochs=1, lr=1e-3))
    state = svi.init(model, guide, loader, len(loader))

    def bare_epoch():
        with pyro.validation_enabled(False):
            for x, y in loader:
                svi.update(state, x, y, 1.0)

    fit_model = to_bayesian(build(), (1, 28, 28), prior=NormalPrior(1.0), num_data=args.examples)
    fit_guide = auto_normal(fit_model)

    def fit_epoch():
        fit(fit_model, fit_guide, loader, Schedule(epochs=1, lr=1e-3))

    systems = {"plain epoch": plain_epoch, "bare steps": bare_epoch, "fit epoch": fit_epoch}
    times = {name: [] for name in systems}
    for run in systems.values():  # warm-up
        run()
    for _ in range(args.repeats):
        for name, run in systems.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    lines = [f"# {datetime.date.today()} {args.threads} threads, torch {torch.__version__}; python "
             f"benchmarks/fit_overhead.py --model {args.model} --examples {args.examples} --repeats {args.repeats} "
             f"--threads {args.threads}",
             f"{'system':12} {'median s':>9} {'x plain':>8} {'x bare':>7}"]
    for name, seconds in medians.items():
        lines.append(f"{name:12} {seconds:9.3f} {seconds / medians['plain epoch']:8.2f} "
                     f"{seconds / medians['bare steps']:7.2f}")
    text = "\n".join(lines)
    print(text)
    with (Path(__file__).parent / "results" / f"{datetime.date.today()}-fit_overhead.txt").open("a") as f:
        f.write(text + "\n\n")


if __name__ == "__main__":
    main()
