"""How long a command takes to answer when it does no training: ``import pyro_bnn`` (and a name of it, which imports
the library's seams), ``python -m pyro_bnn.train --help``, ``--cfg job``, refused configs (``prior.scale=0``, a bad
value, and ``prior.df=5``, a key the option does not take: both refused without torch; ``inference.elbo=x``, refused
by the library's check, after torch's import) and a refused evaluate (a run dir that does not exist), each a fresh
process, timed whole (median, min and max of ``--repeats`` runs), against the hardening issue's targets: ``import
pyro_bnn`` under 3 s, the others under 2 s.

    python benchmarks/startup.py --repeats 7
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

#: (what, command, target in seconds, exit code expected)
COMMANDS = [
    ("import pyro_bnn", [sys.executable, "-c", "import pyro_bnn"], 3.0, 0),
    ("from pyro_bnn import fit (the library)", [sys.executable, "-c", "from pyro_bnn import fit"], 3.0, 0),
    ("train --help", [sys.executable, "-m", "pyro_bnn.train", "--help"], 2.0, 0),
    ("train --cfg job", [sys.executable, "-m", "pyro_bnn.train", "--cfg", "job"], 2.0, 0),
    ("train prior.scale=0 (refused)", [sys.executable, "-m", "pyro_bnn.train", "prior.scale=0"], 2.0, 1),
    ("train prior.df=5 (refused: a key)", [sys.executable, "-m", "pyro_bnn.train", "prior.df=5"], 2.0, 1),
    ("train inference.elbo=x (refused by the library)", [sys.executable, "-m", "pyro_bnn.train", "inference.elbo=x"],
     2.0, 1),
    ("evaluate run_dir=<missing> (refused)", [sys.executable, "-m", "pyro_bnn.app.evaluate", "run_dir=/nonexistent"], 2.0, 1),
]


def time_command(command, expected: int, cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != expected:
        raise SystemExit(f"{' '.join(command[1:])}: exit {proc.returncode}, expected {expected}:\n{proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cwd:  # refused commands write nothing; --cfg job neither
        print(f"python {sys.version.split()[0]}; {args.repeats} runs each, a fresh process per run, in {ROOT.name}")
        print(f"{'command':48s} {'median s':>9s} {'min':>6s} {'max':>6s} {'target':>7s}  met")
        for name, command, target, expected in COMMANDS:
            times = [time_command(command, expected, Path(cwd)) for _ in range(args.repeats)]
            median = statistics.median(times)
            print(f"{name:48s} {median:9.2f} {min(times):6.2f} {max(times):6.2f} {target:7.1f}  "
                  f"{'yes' if median < target else 'NO'}")


if __name__ == "__main__":
    main()
