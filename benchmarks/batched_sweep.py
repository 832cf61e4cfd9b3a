"""Whole sweeps, end to end (start-up, training, scoring, every job's files, the summary), with ``launcher=batched``
against ``launcher=basic`` and ``launcher=local_parallel``, each a fresh command timed whole:

* ``uci``: 20 splits of the UCI preset on ``--uci-data`` (``'data.split=range(20)'``), and one split alone;
* ``seeds``: a 20-seed sweep of the digits MLP (``+experiment=digits_mlp 'seed=range(20)'``);
* ``prior_scale``: the 7-job prior-scale sweep of the digits MLP (``+sweep=prior_scale +experiment=digits_mlp``);
* ``cnn_seeds``: 5 seeds of the default run (the digits CNN, ``'seed=range(5)'``), and one run alone.

Prints each command's seconds (the median of ``--repeats`` runs, the commands of a sweep taken in turn), each
sweep's time against the batched one, and (uci, cnn_seeds) the batched sweep against one replicate alone (the issue's
target for uci: at most 3x). Run it on a quiet machine: nothing else may run meanwhile.

    python benchmarks/batched_sweep.py --sweeps uci seeds prior_scale [--uci-data yacht] [--root ../shared/uci]
    python benchmarks/batched_sweep.py --sweeps uci --launchers batched --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = ("batched", "basic", "local_parallel")


def run(arguments, cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pyro_bnn.train", *arguments, "hydra.job_logging.root.level=WARNING"],
                          cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweeps", nargs="+", default=["uci", "seeds", "prior_scale", "cnn_seeds"])
    parser.add_argument("--uci-data", default="yacht")
    parser.add_argument("--root", default=str(ROOT.parent / "shared" / "uci"))
    parser.add_argument("--launchers", nargs="+", default=list(LAUNCHERS))
    parser.add_argument("--repeats", type=int, default=1, help="runs of each command (in turn); the median is shown")
    args = parser.parse_args()
    sweeps = {
        "uci": ["+experiment=uci", f"data.name={args.uci_data}", f"data.root={Path(args.root).resolve()}",
                "data.split=range(20)"],
        "seeds": ["+experiment=digits_mlp", "seed=range(20)"],
        "prior_scale": ["+sweep=prior_scale", "+experiment=digits_mlp"],
        "cnn_seeds": ["seed=range(5)"],
    }
    #: one replicate of a sweep, run alone
    alone = {"uci": [*sweeps["uci"][:-1], "data.split=0"], "cnn_seeds": []}
    print(f"python {sys.version.split()[0]}; each command {args.repeats} time(s), timed whole (a fresh process); "
          "the median")
    print("| sweep | launcher | s | vs batched |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        for name in args.sweeps:
            commands = {launcher: ["-m", *sweeps[name], f"launcher={launcher}"] for launcher in args.launchers}
            if name in alone:
                commands = {"alone": alone[name], **commands}
            seconds = {key: [] for key in commands}
            for repeat in range(args.repeats):
                for key, command in commands.items():
                    where = "hydra.run.dir" if key == "alone" else "hydra.sweep.dir"
                    seconds[key].append(run([*command, f"{where}={cwd / name / key / str(repeat)}"], cwd))
            times = {key: statistics.median(values) for key, values in seconds.items()}
            for key, median in times.items():
                label = (f"{name}, one replicate alone", "basic") if key == "alone" else (name, key)
                ratio = f"{median / times['batched']:.2f}x" if "batched" in times and key != "alone" else ""
                print(f"| {label[0]} | {label[1]} | {median:.1f} | {ratio} |", flush=True)
            if name in alone and "batched" in times:
                print(f"| {name}: the batched sweep against one replicate alone | | "
                      f"{times['batched'] / times['alone']:.2f}x | |")


if __name__ == "__main__":
    main()
