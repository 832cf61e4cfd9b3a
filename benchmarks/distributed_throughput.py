"""Epochs per second of :func:`pyro_bnn.fit` on 1 and on K processes (torchrun, data-parallel, gloo on CPU).

Each configuration trains the same Bayesian network (``--model mlp``: 784-400-400-10, ``cnn``: 32c5-64c5-256-10,
as in ``step_time.py``) on the same random MNIST-shaped data set (``--examples``) at the same global batch size,
with one torch thread per process; the first epoch is a warm-up, the median of the others is reported. Every
configuration runs ``--repeats`` times, interleaved, and the medians are compared.

    python benchmarks/distributed_throughput.py [--model mlp] [--processes 1 2] [--epochs 4] [--repeats 3]
                                                [--threads 1] [--single-threads 2]

Writes ``benchmarks/results/<date>-distributed_throughput.txt``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(args) -> None:
    """One process of a run (under torchrun when ``WORLD_SIZE`` > 1): time the epochs, rank 0 writes them."""
    import pyro
    import torch
    import torch.distributed as dist
    from step_time import cnn, mlp
    from torch.utils.data import TensorDataset

    from pyro_bnn import NormalPrior, Schedule, auto_normal, fit, make_loader, to_bayesian

    torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(args.examples, 1, 28, 28, generator=g), torch.randint(0, 10, (args.examples,), generator=g))
    pyro.set_rng_seed(0)
    model = to_bayesian({"mlp": mlp, "cnn": cnn}[args.model](), (1, 28, 28), prior=NormalPrior(1.0), num_data=args.examples)
    guide = auto_normal(model)
    history = fit(model, guide, make_loader(data, args.batch, shuffle=True, seed=0, rank=rank, world_size=world),
                  Schedule(epochs=args.epochs, lr=1e-3), distributed=world > 1)
    times = [b["time_s"] - a["time_s"] for a, b in zip(history, history[1:])]  # without the first (warm-up) epoch
    if rank == 0:
        Path(args.out).write_text(json.dumps({"epoch_s": statistics.median(times), "loss": history[-1]["loss"]}))
    if world > 1:
        dist.destroy_process_group()


def run(processes: int, threads: int, args, out: Path) -> dict:
    command = [sys.executable, str(Path(__file__)), "--worker", "--model", args.model, "--epochs", str(args.epochs),
               "--examples", str(args.examples), "--batch", str(args.batch), "--threads", str(threads), "--out", str(out)]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   *command[1:]]
    subprocess.run(command, check=True, capture_output=True, cwd=HERE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--examples", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--single-threads", type=int, default=None,
                        help="also time one process with this many threads (e.g. every core)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    configs = [(k, args.threads) for k in args.processes]
    if args.single_threads:
        configs.append((1, args.single_threads))
    epoch_s = {c: [] for c in configs}
    losses = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for k, threads in configs:
                result = run(k, threads, args, Path(tmp) / f"{k}-{threads}-{repeat}.json")
                epoch_s[(k, threads)].append(result["epoch_s"])
                losses[(k, threads)] = result["loss"]
    base = statistics.median(epoch_s[configs[0]])
    lines = [f"# {datetime.date.today()} {platform.node()} {os.cpu_count()} cores; "
             f"python benchmarks/distributed_throughput.py --model {args.model} --processes "
             f"{' '.join(map(str, args.processes))} --epochs {args.epochs} --examples {args.examples} "
             f"--batch {args.batch} --repeats {args.repeats} --threads {args.threads}"
             + (f" --single-threads {args.single_threads}" if args.single_threads else ""),
             f"{'processes':>9} {'threads':>7} {'epoch s (median)':>17} {'epochs/s':>9} {'speed-up':>9} {'final loss':>12}"]
    for k, threads in configs:
        median = statistics.median(epoch_s[(k, threads)])
        lines.append(f"{k:9d} {threads:7d} {median:17.3f} {1 / median:9.3f} {base / median:9.2f} "
                     f"{losses[(k, threads)]:12.1f}")
    text = "\n".join(lines)
    print(text)
    results = HERE / "results" / f"{datetime.date.today()}-distributed_throughput.txt"
    with results.open("a") as f:
        f.write(text + "\n\n")


if __name__ == "__main__":
    main()
