"""Digits accuracy benchmark: Bayesian CNN and MLP on scikit-learn's offline digits.

Split: ``train_test_split(X/16, y, test_size=0.2, random_state=split, stratify=y)``.
Prints, per model and split: test accuracy, NLL, ECE, Brier, wall time (fit + evaluation),
and the final ELBO terms, so the reader sees how far the posterior is from the ELBO optimum.

    python benchmarks/digits_accuracy.py                 # split 0 (the reference split)
    python benchmarks/digits_accuracy.py --splits 0 1 2 --seeds 0 1 2  # other random splits and seeds
"""

from __future__ import annotations

import argparse
import time

import pyro
import torch
from common import RECIPES

from pyro_bnn import KLWeight, MeanFieldELBO, Schedule, auto_normal, evaluate, fit, load_data, make_loader


def run(kind: str, split: int, seed: int = 0) -> dict:
    pyro.set_rng_seed(seed)
    data = load_data("digits", split_seed=split)
    model = RECIPES[kind]["build"](data)
    guide = auto_normal(model, init_scale=1e-3, init_loc="pytorch")
    start = time.perf_counter()
    history = fit(model, guide, make_loader(data.train, RECIPES[kind]["batch_size"], shuffle=True, seed=seed),
                  Schedule(epochs=RECIPES[kind]["epochs"], lr=RECIPES[kind]["lr"],
                  lr_schedule=RECIPES[kind]["lr_schedule"], kl_weight=KLWeight(RECIPES[kind]["kl_weight"])),
                  MeanFieldELBO(kl="analytic"))
    metrics = evaluate(model, guide, make_loader(data.test, 1000), num_samples=100)
    metrics["time_s"] = time.perf_counter() - start
    metrics["final_nll"], metrics["final_kl"] = history[-1]["nll"], history[-1]["kl"]
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", type=int, nargs="+", default=[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "mlp"], choices=sorted(RECIPES))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':5} {'split':>5} {'seed':>4} {'acc':>7} {'nll':>7} {'ece':>7} {'brier':>7} {'time_s':>7} "
          f"{'train NLL':>10} {'train KL':>10}")
    for kind in args.models:
        for split, seed in [(sp, se) for sp in args.splits for se in args.seeds]:
            m = run(kind, split, seed)
            print(f"{kind:5} {split:5d} {seed:4d} {m['accuracy']:7.2%} {m['nll']:7.4f} {m['ece']:7.4f} {m['brier']:7.4f} "
                  f"{m['time_s']:7.1f} {m['final_nll']:10.1f} {m['final_kl']:10.0f}", flush=True)


if __name__ == "__main__":
    main()
