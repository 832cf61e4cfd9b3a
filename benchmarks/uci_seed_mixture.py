"""Does a mixture of K independently trained posteriors (the preset under K seeds) predict better than one, on the
UCI benchmark's validation parts? The question behind using a batched sweep's spare capacity for seeds instead of
splits (a "deep ensemble of BNNs": the predictive is the mixture of every seed's S posterior draws).

Per data set, one ``launcher=batched`` sweep of ``+experiment=uci`` over ``--splits`` x ``seed=0..K-1`` on the
validation parts (``data.validation=0.2``: trained on the first 80% of each training split, scored on the last
20%; the test splits are never read), then each split scored twice from the saved posteriors with the likelihood's
own metrics (:meth:`~pyro_bnn.model.likelihoods.Likelihood.metrics`, original units): one seed at a time (the
mean over the K seeds) and the mixture of all K (their ``K x S`` draws as one predictive). The mixture's
log-likelihood is never below the mean of its members' on a test point (Jensen); the question is by how much.

    python benchmarks/uci_seed_mixture.py --root ../shared/uci --datasets bostonHousing wine-quality-red --seeds 5
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import pyro
import torch
from common import bad_uci_split, missing_uci_file
from omegaconf import OmegaConf

from pyro_bnn.app.build import load_run_data, posterior_from_file
from pyro_bnn.data.loaders import make_loader
from pyro_bnn.evaluation.predictive import predict

SMALL_DATASETS = ["bostonHousing", "energy", "wine-quality-red", "yacht"]


def sweep(root: str, name: str, splits: List[int], seeds: int, out: Path) -> None:
    """The preset on the validation parts of ``splits`` under seeds ``0..seeds-1``, as one batched sweep in ``out``."""
    command = [sys.executable, "-m", "pyro_bnn.train", "-m", "+experiment=uci", f"data.name={name}",
               f"data.root={root}", f"data.split={','.join(map(str, splits))}", f"seed=range({seeds})",
               "data.validation=0.2", "launcher=batched", f"hydra.sweep.dir={out}",
               "hydra.job_logging.root.level=WARNING", "progress=false"]
    print("$", " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def split_scores(out: Path) -> Dict[int, Dict[str, float]]:
    """Per split: the mean over seeds of each seed's validation log-likelihood, and that of the seeds' mixture."""
    splits: Dict[int, tuple] = {}  # split: (its likelihood, targets, target sd, each seed's draws)
    for posterior in sorted(out.glob("*/posterior.pt")):
        model, guide, cfg, _ = posterior_from_file(posterior)
        data = load_run_data(OmegaConf.merge(cfg.data, {"download": False}))
        loader = make_loader(data.test, cfg.data.test_batch_size)
        pyro.set_rng_seed(cfg.seed)
        draws, targets = predict(model, guide, loader, cfg.eval.num_samples)
        splits.setdefault(cfg.data.split, (model.likelihood, targets, data.target_std, []))[3].append(draws)
    return {split: {"one seed": statistics.mean(log_likelihood(likelihood, d, targets, target_std) for d in draws),
                    "mixture": log_likelihood(likelihood, torch.cat(draws), targets, target_std)}
            for split, (likelihood, targets, target_std, draws) in splits.items()}


def log_likelihood(likelihood, draws: torch.Tensor, targets: torch.Tensor, target_std: float) -> float:
    """The test log-likelihood (original units) of the predictive given by ``draws`` ``(S, N, ...)``."""
    return likelihood.in_original_units(likelihood.metrics(draws, targets), target_std)["log_likelihood"]


def mean_se(values: List[float]) -> str:
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values) / math.sqrt(len(values)):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/uci")
    parser.add_argument("--datasets", nargs="+", default=SMALL_DATASETS)
    parser.add_argument("--splits", nargs="+", type=int, default=list(range(20)))
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    if args.seeds < 2 or len(args.splits) < 2:
        parser.error("--seeds and --splits: at least 2 of each (a mixture needs two seeds, a standard error two splits)")
    root = str(Path(args.root).resolve())
    problem = (missing_uci_file(Path(root), args.datasets, {"the preset": ["n_splits.txt"]})
               or bad_uci_split(Path(root), args.datasets, args.splits))
    if problem:
        parser.error(problem)
    print(f"| data set | one seed (mean over {args.seeds}) | mixture of {args.seeds} seeds | mixture - one seed | "
          "splits the mixture scored higher |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            sweep(root, name, args.splits, args.seeds, Path(tmp) / name)
            scores = split_scores(Path(tmp) / name)
            one = [s["one seed"] for s in scores.values()]
            mixed = [s["mixture"] for s in scores.values()]
            gain = [m - o for m, o in zip(mixed, one)]
            print(f"| {name} | {mean_se(one)} | {mean_se(mixed)} | {mean_se(gain)} | "
                  f"{sum(g > 0 for g in gain)} of {len(gain)} |", flush=True)
    print(f"\nvalidation log-likelihood, original units, mean +- SE over splits {' '.join(map(str, args.splits))}")


if __name__ == "__main__":
    main()
