"""Regression data sets that ship with scikit-learn, written in the UCI benchmark's layout, so that
``benchmarks/uci.py`` can run its recipe on data it was not chosen on (``../shared/uci`` holds the seven it was).

* ``diabetes``: scikit-learn's diabetes data (442 patients, 10 inputs, disease progression after a year);
* ``friedman1``: Friedman's first synthetic problem (``make_friedman1``: 10 uniform inputs, 5 of them used,
  ``10 sin(pi x1 x2) + 20 (x3 - 0.5)^2 + 10 x4 + 5 x5`` plus N(0, 1) noise), 2,000 examples.

Each gets 20 random 90/10 train/test splits (seeded), ``n_splits.txt`` and the benchmark network's 50 hidden units
(``n_hidden.txt``); no MC dropout grid (its noise precisions are set per data set by hand in the published
files), so run the preset and the local ensemble:

    python benchmarks/uci_layout.py --out /tmp/uci_sklearn
    python benchmarks/uci.py --root /tmp/uci_sklearn --datasets diabetes friedman1 --methods pyro_bnn ensemble
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes, make_friedman1

SPLITS = 20
TEST_FRACTION = 0.1


def data_sets(seed: int):
    """``{name: (inputs, target)}`` of the data sets written."""
    return {"diabetes": load_diabetes(return_X_y=True),
            "friedman1": make_friedman1(n_samples=2000, n_features=10, noise=1.0, random_state=seed)}


def write_layout(folder: Path, x: np.ndarray, y: np.ndarray, seed: int) -> None:
    """``x``, ``y`` as ``folder``'s ``data.txt`` with its index files and ``SPLITS`` random train/test splits."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "data.txt", np.column_stack([x, y]))
    np.savetxt(folder / "index_features.txt", np.arange(x.shape[1]), fmt="%d")
    np.savetxt(folder / "index_target.txt", [x.shape[1]], fmt="%d")
    rng = np.random.default_rng(seed)
    test_size = int(round(TEST_FRACTION * len(y)))
    for split in range(SPLITS):
        order = rng.permutation(len(y))
        np.savetxt(folder / f"index_train_{split}.txt", np.sort(order[test_size:]), fmt="%d")
        np.savetxt(folder / f"index_test_{split}.txt", np.sort(order[:test_size]), fmt="%d")
    (folder / "n_splits.txt").write_text(f"{SPLITS}\n")
    (folder / "n_hidden.txt").write_text("50\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the folder to write <name>/data/ into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sets = data_sets(args.seed)
    for name in sets:
        folder = Path(args.out) / name / "data"
        if folder.exists():
            parser.error(f"{folder} exists: pass another --out (nothing is overwritten)")
    for name, (x, y) in sets.items():
        write_layout(Path(args.out) / name / "data", x, y, args.seed)
        print(f"{name}: {len(y)} examples, {x.shape[1]} inputs, {SPLITS} splits -> {Path(args.out) / name / 'data'}")


if __name__ == "__main__":
    main()
