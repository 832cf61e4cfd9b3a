"""Wall time of a 4-job sweep: Hydra's basic launcher (one job after another, torch's default threads)
against launcher=local_parallel (joblib, one process per core, one torch thread per job).

    python benchmarks/sweep_parallel.py [--repeats 2]

Each job is a short digits CNN run. Both sweeps run the real entry point in subprocesses, alternately,
in this one process; the script prints each wall time, the medians and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB = ["prior.scale=0.1,0.3,1,3", "model.channels=[16,32]", "model.hidden=[64]", "inference.epochs=25",
       "eval.num_samples=20", "hydra.job_logging.root.level=WARNING"]


def sweep_seconds(launcher: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pyro_bnn.train", "-m", f"launcher={launcher}", *JOB,
                        f"hydra.sweep.dir={tmp}"], cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    times = {"basic": [], "local_parallel": []}
    for _ in range(args.repeats):
        for launcher in times:
            times[launcher].append(sweep_seconds(launcher))
            print(f"{launcher:15} {times[launcher][-1]:6.1f} s", flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"{os.cpu_count()} cores, 4 jobs; median wall time: basic {medians['basic']:.1f} s, "
          f"local_parallel {medians['local_parallel']:.1f} s; parallel/serial ratio "
          f"{medians['local_parallel'] / medians['basic']:.2f}")


if __name__ == "__main__":
    main()
