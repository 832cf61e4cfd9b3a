"""Choosing the UCI preset without the test splits: candidate recipes scored on a validation part of training splits.

Each candidate is ``+experiment=uci`` with a few overrides, trained on the first 80% of a training split and scored
on its last 20% (``data.validation=0.2``: the test split is never read), for every data set under ``--root``. The
table gives the validation log-likelihood (original units) per data set and candidate, and each candidate's mean
rank over the data sets (1 is best); the preset is the candidate of the best mean rank. A candidate whose loss
exploded on a split scores -inf there.

    python benchmarks/uci_recipe.py --root ../shared/uci --splits 0
    python benchmarks/uci_recipe.py --datasets naval-propulsion-plant power-plant --splits 0 1 \\
        --candidates "heteroscedastic, N(0, 1)" "heteroscedastic, N(0, 1), 3x steps"
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import statistics
import tempfile
from pathlib import Path
from typing import Dict, List

from common import UCI_DATASETS, bad_uci_split, missing_uci_file, train_config

#: Overrides of ``+experiment=uci`` (heteroscedastic, Wu et al.'s learned prior: ``prior=empirical_bayes_invgamma``,
#: N(0, s^2) per site with ``s^2`` at its ELBO optimum under InvGamma(alpha = 1, beta = 10); a KL warm-up over the
#: first 30% of the epochs since 2026-12-06-uci_recipe_warmup.txt, the earlier records' preset had none), each without the
#: preset's size rule (the candidates are what chose it: ``inference.large_data.above=0``). The other learned prior
#: is ``prior=empirical_bayes`` (N(0, s^2 / fan_in) per site under an InvGamma(alpha = 1) hyperprior whose mode is
#: the fan-in scale); N(0, 1) is ``prior=normal``.
LEARNED_PRIOR = ["prior=empirical_bayes", "prior.hyperprior_alpha=1.0"]
NORMAL_PRIOR = ["prior=normal"]
CANDIDATES = {
    "heteroscedastic, learned prior": LEARNED_PRIOR,
    "homoscedastic, learned prior": ["likelihood=gaussian", *LEARNED_PRIOR],
    "heteroscedastic, N(0, 1)": NORMAL_PRIOR,
    "homoscedastic, N(0, 1)": ["likelihood=gaussian", *NORMAL_PRIOR],
    "heteroscedastic, N(0, 1), 3x steps": [*NORMAL_PRIOR, "inference.steps=18000"],
    "heteroscedastic, N(0, 1), 3x steps, lr 0.003": [*NORMAL_PRIOR, "inference.steps=18000", "inference.lr=0.003"],
    "heteroscedastic, N(0, 1), lr 0.003, >= 40 epochs": [*NORMAL_PRIOR, "inference.lr=0.003", "inference.min_epochs=40"],
    "heteroscedastic, Wu et al. prior": [],
    "homoscedastic, Wu et al. prior": ["likelihood=gaussian"],
    "heteroscedastic, Wu et al. prior, 3x steps, lr 0.003": ["inference.steps=18000", "inference.lr=0.003"],
    "heteroscedastic, Wu et al. prior, 3x steps, lr 0.003, batch 128": ["inference.steps=18000", "inference.lr=0.003",
                                                                        "data.batch_size=128"],
    "heteroscedastic, Wu et al. prior, 3x steps, lr 0.003, batch 512": ["inference.steps=18000", "inference.lr=0.003",
                                                                        "data.batch_size=512"],
    "heteroscedastic, Wu et al. prior, 3x steps, lr 0.003, batch 2048": ["inference.steps=18000", "inference.lr=0.003",
                                                                         "data.batch_size=2048"],
    "heteroscedastic, Wu et al. prior, 3x steps, lr 0.01, batch 512": ["inference.steps=18000", "data.batch_size=512"],
    "heteroscedastic, Wu et al. prior, batch 512": ["data.batch_size=512"],
    "heteroscedastic, Wu et al. prior, lr 0.003, batch 512": ["inference.lr=0.003", "data.batch_size=512"],
    "heteroscedastic, Wu et al. prior, batch 128": ["data.batch_size=128"],
    "heteroscedastic, Wu et al. prior, 2x steps": ["inference.steps=12000"],
    "heteroscedastic, Wu et al. prior, 1000 predictive draws": ["eval.num_samples=1000"],
    "heteroscedastic, Wu et al. prior, 2x steps, lr 0.003, batch 512": ["inference.steps=12000", "inference.lr=0.003",
                                                                        "data.batch_size=512"],
    "heteroscedastic, Wu et al. prior, batch 1024": ["data.batch_size=1024"],
    "heteroscedastic, Wu et al. prior, batch 256": ["data.batch_size=256"],
    "homoscedastic, N(0, 1), batch 128": ["likelihood=gaussian", *NORMAL_PRIOR, "data.batch_size=128"],
    "heteroscedastic, Wu et al. prior, 0.5x steps": ["inference.steps=3000"],
    "heteroscedastic, Wu et al. prior, 0.25x steps": ["inference.steps=1500"],
    "homoscedastic, N(0, 1), 0.5x steps": ["likelihood=gaussian", *NORMAL_PRIOR, "inference.steps=3000"],
    "heteroscedastic, Wu et al. prior, batch 1024, 2x steps": ["data.batch_size=1024", "inference.steps=12000"],
    "heteroscedastic, Wu et al. prior, 4 particles": ["inference.num_particles=4"],
    "heteroscedastic, Wu et al. prior, guide sd 0.01": ["guide.init_scale=0.01"],
    "heteroscedastic, Wu et al. prior, no KL warm-up": ["inference.kl_warmup_fraction=0"],
    "heteroscedastic, Wu et al. prior, KL warm-up 10%": ["inference.kl_warmup_fraction=0.1"],
    "heteroscedastic, Wu et al. prior, KL warm-up 50%": ["inference.kl_warmup_fraction=0.5"],
}
#: The candidates of the preset's choice (the longer ones were measured later, on the large data sets only).
DEFAULT_CANDIDATES = list(CANDIDATES)[:4]
DATASETS = UCI_DATASETS


def run(job) -> Dict:
    candidate, name, split, root = job
    from pyro_bnn.app.train import train

    overrides = ["+experiment=uci", f"data.name={name}", f"data.root={root}", f"data.split={split}",
                 "data.validation=0.2", "progress=false", "inference.large_data.above=0",
                 *CANDIDATES[candidate]]
    cfg = train_config(*overrides)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            metrics = train(cfg, tmp)
        except FloatingPointError as error:  # a diverged candidate scores -inf, the others still run
            print(f"{candidate}, {name} split {split}: {error}", flush=True)
            return {"candidate": candidate, "data": name, "split": split, "log_likelihood": -math.inf,
                    "rmse": math.inf}
    return {"candidate": candidate, "data": name, "split": split, **metrics["test"], "fit_s": metrics["fit_time_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/uci")
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--splits", nargs="+", type=int, default=[0])
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=DEFAULT_CANDIDATES)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    candidates = args.candidates
    root = str(Path(args.root).resolve())
    problem = (missing_uci_file(Path(root), args.datasets, {"the preset": ["n_splits.txt"]})
               or bad_uci_split(Path(root), args.datasets, args.splits))
    if problem:
        parser.error(problem)
    jobs = [(c, d, s, root) for d in args.datasets for s in args.splits for c in candidates]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        records: List[Dict] = list(pool.imap_unordered(run, jobs))
    ranks = {c: [] for c in candidates}
    print("| data set | " + " | ".join(candidates) + " |")
    print("|---|" + "---|" * len(candidates))
    for name in args.datasets:
        ll = {c: statistics.mean(r["log_likelihood"] for r in records if r["candidate"] == c and r["data"] == name)
              for c in candidates}
        rmse = {c: statistics.mean(r["rmse"] for r in records if r["candidate"] == c and r["data"] == name)
                for c in candidates}
        fit_s = {c: statistics.mean(r.get("fit_s", math.nan) for r in records if r["candidate"] == c and r["data"] == name)
                 for c in candidates}
        for rank, c in enumerate(sorted(candidates, key=lambda c: -ll[c]), 1):
            ranks[c].append(rank)
        print(f"| {name} | " + " | ".join(f"{ll[c]:.3f} ({rmse[c]:.3g}, {fit_s[c]:.0f} s)" for c in candidates) + " |")
    print("| mean rank | " + " | ".join(f"{statistics.mean(ranks[c]):.2f}" for c in candidates) + " |")
    print("\nvalidation log-likelihood (RMSE, fit seconds), original units; splits " + " ".join(map(str, args.splits)))


if __name__ == "__main__":
    main()
