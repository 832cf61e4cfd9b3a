"""The per-step cost of :func:`pyro_bnn.fit` on the UCI benchmark's network against a plain PyTorch step.

The network of ``+experiment=uci``: ``--inputs``-50-2 ReLU MLP with a heteroscedastic Gaussian likelihood, batch 32,
``--examples`` random standardised examples (a boston-sized training split by default), one thread:

* ``plain``: the same MLP, its mean and ``1e-3 + softplus`` sd outputs, Gaussian NLL, torch Adam, over the loader;
* ``fit (<estimator>)``: ``fit(..., epochs=--epochs)`` of the BayesianMLP and its mean-field guide (N(0, 1) prior,
  exact ELBO), per step: the whole call (set-up, checks, records) divided by its steps.

Systems interleaved ``--repeats`` times; medians and the ratio of each to the plain step (same process).

    python benchmarks/uci_step.py [--examples 455] [--inputs 13] [--epochs 10] [--repeats 7]
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

ESTIMATORS = ("shared", "local_reparameterization")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=455)
    parser.add_argument("--inputs", type=int, default=13)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(args.examples, args.inputs, generator=g), torch.randn(args.examples, generator=g))
    loader = make_loader(data, 32, shuffle=True, seed=0)

    plain = plain_uci_training(args.inputs, loader, args.epochs)

    def bayesian(estimator):
        pyro.set_rng_seed(0)
        model = BayesianMLP(args.inputs, 2, hidden=(50,), prior=NormalPrior(1.0), num_data=args.examples,
                            likelihood=HeteroscedasticGaussian())
        guide = auto_normal(model)
        return lambda: fit(model, guide, loader, Schedule(epochs=args.epochs, lr=1e-2),
                           MeanFieldELBO(estimator=estimator))

    systems = {"plain": plain, **{f"fit ({e})": bayesian(e) for e in ESTIMATORS}}
    times = interleaved_ms_per_step(systems, args.repeats, args.epochs * len(loader))
    plain_ms = times["plain"]
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, 1 thread; {args.inputs}-50-2 MLP, batch 32, "
          f"{args.examples} examples, {args.epochs} epochs per call, {args.repeats} repeats")
    print("| system | ms/step (median) | ratio to plain |")
    print("|---|---|---|")
    for name, median in times.items():
        print(f"| {name} | {median:.3f} | {median / plain_ms:.2f}x |")


if __name__ == "__main__":
    main()
