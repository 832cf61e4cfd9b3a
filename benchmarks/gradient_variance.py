"""Variance of the gradient of the loss w.r.t. the guide's locations, per estimator, on one minibatch.

The setting of Kingma, Salimans & Welling (2015), Table 1, on scikit-learn's digits: a Bayesian MLP
64-400-400-10 (N(0, 1) prior, mean-field Normal guide) is trained for a few epochs with the default
estimator; then, on one fixed minibatch of B examples, the gradient of the -ELBO estimate with respect
to the guide's locations of the top layer (and of the first layer) is drawn ``--repeats`` times with:

* ``shared``: one weight draw for the whole minibatch (pyro_bnn's default, Pyro's too);
* ``separate``: an independent weight draw for every example (B model runs: the costly reference);
* ``local_reparameterization`` and ``flipout``: :mod:`pyro_bnn.objectives.estimators`.

Prints the variance (mean over the layer's entries of the variance over the draws), its ratio to
``shared``, and the time per gradient.

    python benchmarks/gradient_variance.py [--batch 100] [--repeats 100] [--epochs 10] [--init-scale 0.05]
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import pyro
import torch

from pyro_bnn import (
    BayesianMLP,
    NormalPrior,
    Schedule,
    auto_normal,
    elbo_terms,
    estimator_handler,
    fit,
    load_data,
    make_loader,
)

ESTIMATORS = ("shared", "separate", "local_reparameterization", "flipout")
LAYERS = {"top": "net.5.weight", "first": "net.1.weight"}


def gradients(model, guide, x, y, estimator: str, repeats: int):
    params = dict(guide.named_parameters())
    draws = {layer: [] for layer in LAYERS}
    handler = estimator_handler(estimator) if estimator != "separate" else None
    start = time.perf_counter()
    for _ in range(repeats):
        guide.zero_grad(set_to_none=True)
        if estimator == "separate":
            loss = sum(elbo_terms(model, guide, x[i:i + 1], y[i:i + 1]).loss for i in range(len(x))) / len(x)
        else:
            with handler if handler is not None else nullcontext():
                loss = elbo_terms(model, guide, x, y).loss
        loss.backward()
        for layer, site in LAYERS.items():
            draws[layer].append(params[f"locs.{site}_unconstrained"].grad.clone())
    seconds = (time.perf_counter() - start) / repeats
    return {layer: float(torch.stack(g).var(0).mean()) for layer, g in draws.items()}, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--init-scale", type=float, default=0.05)
    args = parser.parse_args()
    pyro.set_rng_seed(0)
    data = load_data("digits")
    model = BayesianMLP(data.in_shape, 10, hidden=(400, 400), prior=NormalPrior(1.0), num_data=data.num_train)
    guide = auto_normal(model, init_scale=args.init_scale)
    fit(model, guide, make_loader(data.train, args.batch, shuffle=True), Schedule(epochs=args.epochs, lr=1e-3))
    x, y = (t[: args.batch] for t in data.train.tensors)
    print(f"digits MLP 64-400-400-10, {args.epochs} epochs trained, batch {args.batch}, {args.repeats} gradient draws")
    print(f"{'estimator':26} {'var top':>10} {'x shared':>8} {'var first':>10} {'x shared':>8} {'ms/grad':>8}")
    results = {name: gradients(model, guide, x, y, name, args.repeats) for name in ESTIMATORS}
    base = results["shared"][0]
    for name, (variance, seconds) in results.items():
        print(f"{name:26} {variance['top']:10.4g} {variance['top'] / base['top']:8.3f} "
              f"{variance['first']:10.4g} {variance['first'] / base['first']:8.3f} {seconds * 1e3:8.1f}")


if __name__ == "__main__":
    main()
