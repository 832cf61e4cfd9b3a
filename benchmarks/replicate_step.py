"""The per-step cost of R replicates of the UCI preset's network trained as one, against R replicates trained apart.

The network of ``+experiment=uci``: ``--inputs``-50-2 ReLU MLP, heteroscedastic Gaussian likelihood, learned prior
scales under the InvGamma hyperprior (``prior=empirical_bayes_invgamma``), local reparameterization, one thread;
``--examples`` random standardised examples per replicate (a boston-sized training split by default), each replicate
its own data and order. Per optimizer step, at each batch size of ``--batch-sizes``:

* ``plain``: the same MLP as a plain PyTorch network (mean and ``1e-3 + softplus`` sd outputs, Gaussian NLL, Adam);
* ``alone``: one replicate, ``fit`` of its pair (the whole call divided by its steps);
* ``together, R``: ``fit_replicates`` of R pairs over :class:`StackedBatches` (what ``launcher=batched`` trains; the
  whole call divided by its steps: one step trains all R).

Each system runs ``--epochs`` epochs per call, interleaved ``--repeats`` times; medians, and each ``together``
against one replicate alone and against R of them (same process). The issue's targets: at batch 128, 20 replicates
in at most 2.5x one replicate's step; at batch 1024, no more than 20 separate replicate steps.

    python benchmarks/replicate_step.py [--replicates 1 5 20 100] [--batch-sizes 128 1024] [--repeats 5]
"""

from __future__ import annotations

import argparse

import pyro
import torch
from common import interleaved_ms_per_step, plain_uci_training
from torch.utils.data import TensorDataset

from pyro_bnn import (
    BayesianMLP,
    HeteroscedasticGaussian,
    MeanFieldELBO,
    NormalPrior,
    Schedule,
    auto_normal,
    fit,
    make_loader,
)
from pyro_bnn.training.replicate_data import StackedBatches
from pyro_bnn.training.replicate_fit import fit_replicates
from pyro_bnn.training.replicates import build_replicates

ESTIMATOR = "local_reparameterization"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=455)
    parser.add_argument("--inputs", type=int, default=13)
    parser.add_argument("--replicates", type=int, nargs="+", default=[1, 5, 20, 100])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per timed call (at least)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, {args.threads} thread(s); {args.inputs}-50-2 MLP "
          f"(the UCI preset: heteroscedastic, learned prior scales, {ESTIMATOR}), {args.examples} examples per "
          f"replicate, {args.repeats} repeats")
    print("| batch | system | ms/step (median) | vs one replicate alone | vs R replicates alone |")
    print("|---|---|---|---|---|")
    for batch in args.batch_sizes:
        bench(args, batch)


def data(seed: int, args) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(args.examples, args.inputs, generator=g), torch.randn(args.examples, generator=g))


def pair(seed: int, args):
    pyro.set_rng_seed(seed)
    model = BayesianMLP(args.inputs, 2, hidden=(50,), likelihood=HeteroscedasticGaussian(), num_data=args.examples,
                        prior=NormalPrior(5 ** 0.5, learn_scale=True, hyperprior_alpha=1.0))
    return model, auto_normal(model)


def bench(args, batch: int) -> None:
    batches = -(-args.examples // batch)
    epochs = max(1, -(-args.steps // batches))
    steps = epochs * batches
    schedule = Schedule(epochs=epochs, lr=1e-2, lr_schedule="cosine")

    plain = plain_uci_training(args.inputs, make_loader(data(0, args), batch, shuffle=True, seed=0), epochs)

    model, guide = pair(0, args)
    alone_loader = make_loader(data(0, args), batch, shuffle=True, seed=0)

    def alone():
        fit(model, guide, alone_loader, schedule, MeanFieldELBO(estimator=ESTIMATOR))

    def together(size):
        pairs = [pair(r, args) for r in range(size)]
        batches = StackedBatches([data(r, args) for r in range(size)], batch, seeds=list(range(size)))
        replicates = build_replicates(pairs, batches, estimator=ESTIMATOR)
        return lambda: fit_replicates(replicates, batches, schedule)

    systems = {"plain": plain, "alone": alone, **{f"together, R={r}": together(r) for r in args.replicates}}
    times = interleaved_ms_per_step(systems, args.repeats, steps)
    one = times["alone"]
    for name, median in times.items():
        size = int(name.split("=")[1]) if "R=" in name else 1
        versus_r = f"{median / (size * one):.2f}x" if "R=" in name else ""
        print(f"| {batch} | {name} | {median:.3f} | {median / one:.2f}x | {versus_r} |")


if __name__ == "__main__":
    main()
