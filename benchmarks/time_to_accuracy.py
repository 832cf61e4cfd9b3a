"""Time to accuracy: wall time until the digits Bayesian CNN first reaches a test accuracy target.

The CNN recipe of ``benchmarks/digits_accuracy.py`` (reference split 0, seed 0), trained with each
estimator; after every epoch the test accuracy of the posterior predictive (``--samples`` weight draws)
is measured with the clock stopped. Prints, per estimator, the first epoch at the target and the
training time up to it, and the final accuracy.

    python benchmarks/time_to_accuracy.py [--target 0.98] [--estimators shared local_reparameterization flipout]
"""

from __future__ import annotations

import argparse
import time

import pyro
import torch
from common import RECIPES

from pyro_bnn import (
    ESTIMATORS,
    Hooks,
    KLWeight,
    MeanFieldELBO,
    Schedule,
    auto_normal,
    evaluate,
    fit,
    load_data,
    make_loader,
)


def run(estimator: str, target: float, samples: int) -> dict:
    pyro.set_rng_seed(0)
    data = load_data("digits", split_seed=0)
    recipe = RECIPES["cnn"]
    model = recipe["build"](data)
    guide = auto_normal(model, init_scale=1e-3, init_loc="pytorch")
    test_loader = make_loader(data.test, 1000)
    reached, clock = {}, {"train": 0.0, "since": time.perf_counter()}

    def after_epoch(record):
        clock["train"] += time.perf_counter() - clock["since"]
        rng = torch.get_rng_state()
        accuracy = evaluate(model, guide, test_loader, num_samples=samples)["accuracy"]
        torch.set_rng_state(rng)  # evaluation does not change the training's random numbers
        if accuracy >= target and not reached:
            reached.update(epoch=record["epoch"], seconds=clock["train"], accuracy=accuracy)
        clock["last"] = accuracy
        clock["since"] = time.perf_counter()

    fit(model, guide, make_loader(data.train, recipe["batch_size"], shuffle=True, seed=0),
        Schedule(epochs=recipe["epochs"], lr=recipe["lr"], lr_schedule=recipe["lr_schedule"],
        kl_weight=KLWeight(recipe["kl_weight"])), MeanFieldELBO(estimator=estimator, kl="analytic"),
        Hooks(callback=after_epoch))
    return {"reached": reached, "total_s": clock["train"], "final": clock["last"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--samples", type=int, default=20, help="predictive samples per evaluation")
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=ESTIMATORS)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, {torch.get_num_threads()} threads; "
          f"digits CNN, split 0, seed 0, target {args.target:.1%}")
    print(f"{'estimator':26} {'epoch':>5} {'train s':>8} {'acc':>7} {'all epochs s':>12} {'final acc':>9}")
    for estimator in args.estimators:
        r = run(estimator, args.target, args.samples)
        hit = r["reached"]
        print(f"{estimator:26} {hit.get('epoch', '-'):>5} {hit.get('seconds', float('nan')):8.1f} "
              f"{hit.get('accuracy', float('nan')):7.2%} {r['total_s']:12.1f} {r['final']:9.2%}", flush=True)


if __name__ == "__main__":
    main()
