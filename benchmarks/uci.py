"""The UCI regression benchmark: pyro_bnn's ``+experiment=uci`` preset beside two local baselines, on the published
splits, against the published tables.

For each data set (the standard layout under ``--root``; see ``../shared/uci/README.md`` for the protocol):

* ``pyro_bnn``: the ``+experiment=uci`` preset (heteroscedastic, the learned prior under Wu et al.'s hyperprior, the
  exact ELBO after a KL warm-up over the first 30% of the epochs) or the same with one noise sd under a fixed N(0, 1)
  prior (``likelihood=gaussian prior=normal``), chosen per split on a validation part of the training split, as the
  published MC dropout chooses its settings: first, per recipe, ``python -m pyro_bnn.train -m +experiment=uci
  data.name=<set> data.split=<all> data.validation=0.2 inference.steps=3000 <the recipe's overrides>
  launcher=batched`` (each trained 3,000 steps, on the first 80% of the training split, and scored on the last 20%),
  then one sweep of the preset over every split and one of the other recipe over the splits that chose it, on the
  whole training split (the preset's hidden layer is the benchmark's, from ``n_hidden.txt``, 50 units where a folder
  has none; its size rule, batches of 1,024 above 5,000 training examples, applies to both). The final jobs'
  ``metrics.json`` give the test metrics in the original units: ``pyro_bnn``, the recipe each split chose; ``pyro_bnn,
  the preset alone``, the preset on every split (no choice). ``s/split`` is the training time of the final job plus
  that of its split's two validation jobs (with ``--launcher batched``, the default, each sweep's splits train as one
  batch of models and a job's time is its share of the batch's). The sweeps run in ``--lanes`` lanes (2: two sweeps at
  once, each on one thread and writing its jobs' results in its own process, the validation sweeps first, the largest
  data sets' first);
* ``ensemble``: a deep ensemble (Lakshminarayanan et al. 2017) of 5 heteroscedastic MLPs of the same size (mean and
  ``1e-6 + softplus`` sd outputs, Gaussian NLL, Adam lr 0.01, batch 100, 40 epochs, no adversarial training; seeds
  0..4), predicting the mixture of the 5 Normals;
* ``dropout``: MC dropout (Gal & Ghahramani 2016, the published code's recipe): dropout on the input and the
  hidden layer, weight decay ``(1 - p) l^2 / (2 N tau)`` with ``l = 0.01``, batch 128, Adam lr 0.01 with a cosine
  decay, the data set's ``n_epochs.txt`` epochs or more: at least 2,000 steps per candidate and 4,000 for the final
  network (the published 40 epochs are 80 steps on yacht, which leave the network far from fitted); ``p`` and the
  noise precision ``tau`` chosen per split from the data set's ``dropout_rates.txt`` x ``tau_values.txt`` grid by
  the log-likelihood on the last 20% of the training split, then retrained on the whole training split; 100
  dropout masks at test time.

All are scored by the same code (:func:`pyro_bnn.regression_metrics`, :func:`pyro_bnn.in_original_units`) on the
same standardised splits (:func:`pyro_bnn.load_data`). ``s/split`` is the training time of one split (the baselines
on one thread, ``--jobs`` splits at once; the sweeps, one batch of every split on every core). The published rows
are those of ``../shared/uci/README.md``; "2 SE" says whether a local baseline's mean is within two of its
standard errors of its published figure.

Any other data set in the layout runs the same way (``--datasets concrete``, its folder under ``--root``), without
published rows; MC dropout needs its ``n_epochs.txt``, ``dropout_rates.txt`` and ``tau_values.txt`` (a missing file
is one line before any training).

    python benchmarks/uci.py --root ../shared/uci
    python benchmarks/uci.py --root ../shared/uci --datasets yacht --splits 0 1 2 --methods ensemble dropout
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List

import torch
from common import UCI_DATASETS, bad_uci_split, missing_uci_file
from torch import nn

from pyro_bnn import in_original_units, load_data, make_loader, regression_metrics
from pyro_bnn.data.uci import uci_hidden_units

DATASETS = UCI_DATASETS
SHORT = {"bostonHousing": "boston", "naval-propulsion-plant": "naval", "power-plant": "power",
         "protein-tertiary-structure": "protein", "wine-quality-red": "wine"}
#: ``../shared/uci/README.md``: (RMSE, LL) per data set; None where a paper gives no figure.
PUBLISHED = {
    "MC dropout (paper)": {"boston": (2.97, -2.46), "energy": (1.66, -1.99), "naval": (0.01, 3.80),
                           "power": (4.02, -2.80), "protein": (4.36, -2.89), "wine": (0.62, -0.93),
                           "yacht": (1.11, -1.55)},
    "MC dropout (grid)": {"boston": (2.90, -2.40), "energy": (0.54, -1.21), "naval": (0.00, 4.45),
                          "power": (4.01, -2.80), "protein": (4.27, -2.87), "wine": (0.62, -0.93),
                          "yacht": (0.67, -1.25)},
    "deep ensemble": {"boston": (3.28, -2.41), "energy": (2.09, -1.38), "naval": (0.00, 5.63),
                      "power": (4.11, -2.79), "protein": (4.71, -2.83), "wine": (0.64, -0.94),
                      "yacht": (1.58, -1.18)},
    "MCVI + learned prior": {"boston": (None, -2.46), "energy": (None, -1.03), "naval": (None, 5.94),
                             "power": (None, -2.80), "protein": (None, -2.87), "wine": (None, -0.92),
                             "yacht": (None, -0.68)},
}
#: Which published row each local baseline reproduces.
REPRODUCES = {"ensemble": "deep ensemble", "dropout": "MC dropout (paper)"}


def read_int(path: Path) -> int:
    return int(float(path.read_text().split()[0]))


def read_floats(path: Path) -> List[float]:
    return [float(v) for v in path.read_text().split()]


def mlp(d_in: int, hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    layers = [nn.Dropout(dropout)] if dropout else []
    layers += [nn.Linear(d_in, hidden), nn.ReLU()]
    layers += [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(*layers, nn.Linear(hidden, d_out))


def train_net(net: nn.Module, x, y, loss_fn, epochs: int, batch: int, lr: float, seed: int, weight_decay: float = 0.0,
              min_steps: int = 0, cosine: bool = False):
    loader = make_loader(torch.utils.data.TensorDataset(x, y), batch, shuffle=True, seed=seed)
    epochs = max(epochs, math.ceil(min_steps / len(loader)))
    adam = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    total = epochs * len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(adam, lambda i: 0.5 * (1 + math.cos(math.pi * i / total)) if cosine else 1.0)
    net.train()
    for _ in range(epochs):
        for xb, yb in loader:
            adam.zero_grad(set_to_none=True)
            loss_fn(net(xb), yb).backward()
            adam.step()
            schedule.step()
    return net


def heteroscedastic_nll(out, y):
    return -torch.distributions.Normal(out[:, 0], 1e-6 + nn.functional.softplus(out[:, 1])).log_prob(y).mean()


def ensemble(data, hidden: int, seed: int = 0, members: int = 5) -> Dict[str, float]:
    """Metrics (original units) of a deep ensemble of heteroscedastic MLPs, and its training time."""
    (x, y), (xt, yt) = data.train.tensors, data.test.tensors
    start = time.perf_counter()
    nets = []
    for m in range(members):
        torch.manual_seed(1000 * seed + m)
        nets.append(train_net(mlp(x.shape[1], hidden, 2), x, y, heteroscedastic_nll, 40, 100, 0.01, 1000 * seed + m))
    seconds = time.perf_counter() - start
    with torch.no_grad():
        out = torch.stack([net.eval()(xt) for net in nets])
    metrics = regression_metrics(out[..., 0], 1e-6 + nn.functional.softplus(out[..., 1]), yt)
    return {**in_original_units(metrics, data.target_std), "train_s": seconds}


def dropout_fit(x, y, hidden: int, p: float, tau_std: float, epochs: int, seed: int, min_steps: int) -> nn.Module:
    """One MC-dropout network; ``tau_std``: the noise precision in standardised units."""
    torch.manual_seed(seed)
    weight_decay = (1 - p) * 1e-2 ** 2 / (2 * len(x) * tau_std)
    return train_net(mlp(x.shape[1], hidden, 1, p), x, y, lambda out, yb: (out[:, 0] - yb).pow(2).mean(),
                     epochs, 128, 1e-2, seed, weight_decay, min_steps=min_steps, cosine=True)


def dropout_predict(net: nn.Module, x, tau_std: float, y, masks: int = 100) -> Dict[str, float]:
    net.train()  # dropout on at test time: each pass is one posterior draw
    with torch.no_grad():
        locs = torch.stack([net(x)[:, 0] for _ in range(masks)])
    return regression_metrics(locs, tau_std ** -0.5, y)


def mc_dropout(data, hidden: int, folder: Path, seed: int = 0) -> Dict[str, float]:
    """MC dropout with ``p`` and ``tau`` chosen on the last 20% of the training split; metrics in original units."""
    (x, y), (xt, yt) = data.train.tensors, data.test.tensors
    epochs = read_int(folder / "n_epochs.txt")
    grid = [(p, tau) for p in read_floats(folder / "dropout_rates.txt") for tau in read_floats(folder / "tau_values.txt")]
    start = time.perf_counter()
    cut = int(0.8 * len(x))
    scores = []
    for p, tau in grid:
        tau_std = tau * data.target_std ** 2  # tau is the precision in the original units
        net = dropout_fit(x[:cut], y[:cut], hidden, p, tau_std, epochs, seed, min_steps=2000)
        scores.append((dropout_predict(net, x[cut:], tau_std, y[cut:])["log_likelihood"], p, tau))
    _, p, tau = max(scores)
    tau_std = tau * data.target_std ** 2
    net = dropout_fit(x, y, hidden, p, tau_std, epochs, seed, min_steps=4000)
    seconds = time.perf_counter() - start
    metrics = dropout_predict(net, xt, tau_std, yt)
    return {**in_original_units(metrics, data.target_std), "train_s": seconds, "dropout": p, "tau": tau}


def baseline_job(job) -> Dict:
    method, name, split, root = job
    torch.set_num_threads(1)
    folder = Path(root) / name / "data"
    data = load_data("uci", root=root, name=name, split=split)
    hidden = uci_hidden_units(name, root)  # the app's rule: n_hidden.txt, 50 where the folder has none
    result = ensemble(data, hidden) if method == "ensemble" else mc_dropout(data, hidden, folder)
    return {"method": method, "data": name, "split": split, **result}


#: The recipes chosen between per split: the preset as it is (heteroscedastic, the learned prior under Wu et al.'s
#: hyperprior, the KL warm-up), and the same with one noise sd under a fixed N(0, 1) prior (the warm-up kept); each a
#: folder name and its overrides of the preset.
RECIPES = {"preset": [], "gaussian_normal_prior": ["likelihood=gaussian", "prior=normal"]}
#: The method name of the preset's own figures on every split (no per-split choice), shown beside pyro_bnn's.
PRESET_ALONE = "pyro_bnn, the preset alone"


class Lanes:
    """At most ``lanes`` sweeps at once; of the sweeps waiting for a lane, the one of the lowest rank goes first: the
    validation sweeps, then the final ones (which wait for them), each the largest data sets' first, so that the
    lanes stay busy to the end (no final sweep is left to run alone after its validation sweeps)."""

    def __init__(self, lanes: int):
        self.free = lanes
        self.waiting: List[tuple] = []
        self.changed = threading.Condition()
        self.started = False

    def start(self, expected: int, timeout: float = 5.0) -> None:
        """Hand out the first lanes once ``expected`` sweeps wait (or after ``timeout`` s): by rank, not by which
        thread came first."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.waiting) >= expected, timeout)
            self.started = True
            self.changed.notify_all()

    @contextmanager
    def lane(self, rank: tuple):
        with self.changed:
            heapq.heappush(self.waiting, rank)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.started and self.free > 0 and self.waiting[0] == rank)
            heapq.heappop(self.waiting)
            self.free -= 1
            self.changed.notify_all()
        try:
            yield
        finally:
            with self.changed:
                self.free += 1
                self.changed.notify_all()


class Sweeps:
    """Runs the pyro_bnn sweeps of the benchmark, at most ``lanes`` at once (each then on ``cores / lanes`` threads,
    its batch's results written in this lane), every sweep with ``launcher``; with ``reuse``, a sweep already in its
    dir is read instead."""

    def __init__(self, root: str, launcher: str, lanes: int, reuse: bool):
        self.root, self.launcher, self.reuse = root, launcher, reuse
        self.lanes = Lanes(lanes)
        self.printing = threading.Lock()
        cores = os.cpu_count() or 1
        self.lane_overrides = [] if lanes == 1 else [f"threads={max(1, cores // lanes)}"] + (
            ["hydra.launcher.finishers=1"] if launcher == "batched" else [])

    def jobs(self, rank: tuple, sweep: Path, name: str, splits: List[int], *overrides: str) -> List[Dict]:
        """Run (or read) the preset's Hydra sweep over ``splits`` of ``name`` in ``sweep`` (in a lane, by
        ``rank``); each job's metrics.json."""
        if not (self.reuse and (sweep / "multirun.yaml").is_file()):
            command = [sys.executable, "-m", "pyro_bnn.train", "-m", "+experiment=uci", f"data.name={name}",
                       f"data.root={self.root}", f"data.split={','.join(map(str, splits))}", *overrides,
                       *self.lane_overrides, f"launcher={self.launcher}", f"hydra.sweep.dir={sweep}",
                       "hydra.job_logging.root.level=WARNING", "progress=false"]
            with self.lanes.lane(rank):
                with self.printing:  # one whole line per command (the lanes' threads print side by side)
                    print("$", " ".join(command), file=sys.stderr, flush=True)
                subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
        return [json.loads(metrics_file.read_text()) for metrics_file in sorted(sweep.glob("*/metrics.json"))]

    def runs(self, order: int, name: str, splits: List[int], out: Path) -> List[Dict]:
        """The preset on ``splits`` of data set ``name``, its recipe chosen per split on a validation part (the
        recipes' validation sweeps side by side); one record per finished split."""
        with ThreadPoolExecutor(len(RECIPES)) as pool:
            candidates = dict(zip(RECIPES, pool.map(
                lambda recipe: self.jobs((0, order, 0, recipe), out / name / f"select_{recipe}", name, splits,
                                         "data.validation=0.2",
                                         "inference.steps=3000", *RECIPES[recipe]), RECIPES)))
        chosen: Dict[int, str] = {}
        selection_s: Dict[int, float] = {}
        for split in splits:
            scored = [(job["test"]["log_likelihood"], recipe, job["fit_time_s"]) for recipe, jobs in
                      candidates.items() for job in jobs if job["data"]["split"] == split]
            if scored:
                chosen[split] = max(scored)[1]
                selection_s[split] = sum(seconds for _, _, seconds in scored)
        # the preset on every split (its own figures, beside the choice's), each other recipe where it was chosen
        mine = {recipe: [s for s in splits if recipe == "preset" and s in chosen or chosen.get(s) == recipe]
                for recipe in RECIPES}
        trained = [recipe for recipe in RECIPES if mine[recipe]]
        with ThreadPoolExecutor(len(RECIPES)) as pool:
            finals = dict(zip(trained, pool.map(
                lambda recipe: self.jobs((1, order, -len(mine[recipe]), recipe), out / name / recipe, name,
                                         mine[recipe], *RECIPES[recipe]), trained)))
        records = []
        for recipe, jobs in finals.items():
            for job in jobs:
                split = job["data"]["split"]
                record = {"data": name, "split": split, **job["test"], "recipe": recipe}
                if recipe == "preset":
                    records.append({"method": PRESET_ALONE, **record, "train_s": job["fit_time_s"]})
                if chosen[split] == recipe:
                    records.append({"method": "pyro_bnn", **record, "train_s": job["fit_time_s"] + selection_s[split]})
        return records

    def all_runs(self, splits: Dict[str, List[int]], out: Path) -> List[Dict]:
        """:meth:`runs` of every data set (their sweeps in the lanes by :class:`Lanes`' ranks)."""
        def size(name: str) -> int:
            return len(splits[name]) * sum(1 for _ in open(Path(self.root) / name / "data" / "data.txt"))

        names = sorted(splits, key=size, reverse=True)
        with ThreadPoolExecutor(len(names)) as pool:
            running = pool.map(lambda order, name: self.runs(order, name, splits[name], out), range(len(names)), names)
            self.lanes.start(expected=len(names) * len(RECIPES))  # every data set's validation sweeps
            done = dict(zip(names, running))
        return [record for name in splits for record in done[name]]


#: The files of a data set's folder each method reads (MC dropout's own settings are not part of the layout proper).
#: ``n_hidden.txt`` is read where present (:func:`pyro_bnn.data.uci.uci_hidden_units`: 50 units where it is not, as the
#: app's ``+experiment=uci``).
METHOD_FILES = {"pyro_bnn": ["n_splits.txt"], "ensemble": ["n_splits.txt"],
                "dropout": ["n_splits.txt", "n_epochs.txt", "dropout_rates.txt", "tau_values.txt"]}


def mean_se(values: List[float]):
    n = len(values)
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else float("nan")
    return mean, se


def table(records: List[Dict], methods: List[str], datasets: List[str]) -> str:
    lines = ["| data set | method | splits | RMSE | test LL | coverage_90 | s/split | 2 SE of published (RMSE / LL); "
             "pyro_bnn: recipe chosen |",
             "|---|---|---|---|---|---|---|---|"]
    for name in datasets:
        short = SHORT.get(name, name)
        for method in methods:
            rows = [r for r in records if r["method"] == method and r["data"] == name]
            if not rows:
                continue
            (rmse, rmse_se), (ll, ll_se) = mean_se([r["rmse"] for r in rows]), mean_se([r["log_likelihood"] for r in rows])
            coverage, _ = mean_se([r["coverage_90"] for r in rows])
            seconds, _ = mean_se([r["train_s"] for r in rows])
            check = ""
            if method == "pyro_bnn":
                check = f"the preset on {sum(r['recipe'] == 'preset' for r in rows)} splits"
            if method in REPRODUCES and short in PUBLISHED[REPRODUCES[method]]:
                pub_rmse, pub_ll = PUBLISHED[REPRODUCES[method]][short]
                check = (f"{'yes' if abs(rmse - pub_rmse) <= 2 * rmse_se else 'no'} / "
                         f"{'yes' if abs(ll - pub_ll) <= 2 * ll_se else 'no'} ({REPRODUCES[method]})")
            lines.append(f"| {short} | {method} | {len(rows)} | {rmse:.3f} +- {rmse_se:.3f} | {ll:.3f} +- {ll_se:.3f} "
                         f"| {coverage:.3f} | {seconds:.1f} | {check} |")
        for row, figures in PUBLISHED.items():
            if short not in figures:  # a data set outside the published tables
                continue
            rmse, ll = figures[short]
            lines.append(f"| {short} | published: {row} | | {'-' if rmse is None else f'{rmse:.2f}'} | {ll:.2f} | | | |")
    return "\n".join(lines)


def compact_table(records: List[Dict], datasets: List[str]) -> str:
    """The README's table: per data set, RMSE and test LL (mean +- SE) of each local method beside the published
    figures that the targets name; ``*`` marks pyro_bnn's figure where it meets the target."""
    def cell(method, name, key):
        rows = [r[key] for r in records if r["method"] == method and r["data"] == name]
        if not rows:
            return "-", None
        mean, se = mean_se(rows)
        return f"{mean:.3g} +- {se:.2g}", mean

    lines = ["| data set | pyro_bnn RMSE | pyro_bnn LL | the preset alone RMSE / LL | ensemble (local) RMSE / LL | "
             "MC dropout (local) RMSE / LL | published DE RMSE / LL | published MC dropout grid LL | "
             "published MCVI + learned prior LL |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in datasets:
        short = SHORT.get(name, name)
        (rmse, rmse_mean), (ll, ll_mean) = cell("pyro_bnn", name, "rmse"), cell("pyro_bnn", name, "log_likelihood")
        local = [f"{cell(m, name, 'rmse')[0]} / {cell(m, name, 'log_likelihood')[0]}"
                 for m in (PRESET_ALONE, "ensemble", "dropout")]
        if short not in PUBLISHED["deep ensemble"]:  # a data set outside the published tables: nothing to mark
            lines.append(f"| {short} | {rmse} | {ll} | {' | '.join(local)} | - | - | - |")
            continue
        de_rmse, de_ll = PUBLISHED["deep ensemble"][short]
        best_ll = max(PUBLISHED["MC dropout (grid)"][short][1], de_ll)
        mcvi = PUBLISHED["MCVI + learned prior"][short][1]
        marks = ("*" if rmse_mean is not None and rmse_mean <= de_rmse else "",
                 "*" if ll_mean is not None and ll_mean >= mcvi else "",
                 "+" if ll_mean is not None and ll_mean >= best_ll else "")
        lines.append(f"| {short} | {rmse}{marks[0]} | {ll}{marks[1]}{marks[2]} | {' | '.join(local)} | "
                     f"{de_rmse:.2f} / {de_ll:.2f} | {PUBLISHED['MC dropout (grid)'][short][1]:.2f} | {mcvi:.2f} |")
    lines.append("\n`*`: RMSE at most the published deep ensemble's / LL at least MCVI + learned prior's; `+`: LL at "
                 "least the best of published MC dropout (grid) and deep ensembles.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/uci", help="the folder holding the data sets in the UCI layout")
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--splits", nargs="+", type=int, help="default: every split of each data set")
    parser.add_argument("--methods", nargs="+", default=["pyro_bnn", "ensemble", "dropout"],
                        choices=["pyro_bnn", "ensemble", "dropout"])
    parser.add_argument("--jobs", type=int, default=2, help="baseline splits trained at once")
    parser.add_argument("--launcher", default="batched", choices=["batched", "local_parallel", "basic"],
                        help="how the pyro_bnn sweeps run: batched (each sweep's splits as one batch of models), "
                             "local_parallel (a process per core), basic")
    parser.add_argument("--lanes", type=int, default=2, help="pyro_bnn sweeps run at once (each on cores / lanes "
                        "threads): two sweeps on a thread each use two cores better than one sweep on two")
    parser.add_argument("--out", default="outputs/uci_benchmark", help="where the pyro_bnn sweeps go")
    parser.add_argument("--reuse", action="store_true", help="read the pyro_bnn sweeps already in --out, and the "
                        "baselines' records already in --json")
    parser.add_argument("--json", help="also write every split's record to this file")
    args = parser.parse_args()
    root = str(Path(args.root).resolve())
    problem = (missing_uci_file(Path(root), args.datasets, {m: METHOD_FILES[m] for m in args.methods})
               or bad_uci_split(Path(root), args.datasets, args.splits or []))
    if problem:
        parser.error(problem)
    splits = {name: args.splits or list(range(read_int(Path(root) / name / "data" / "n_splits.txt")))
              for name in args.datasets}
    records: List[Dict] = []
    wall = {}
    kept = []
    if args.reuse and args.json and Path(args.json).is_file():
        kept = [r for r in json.loads(Path(args.json).read_text()) if not r["method"].startswith("pyro_bnn")]
    if "pyro_bnn" in args.methods:
        start = time.perf_counter()
        sweeps = Sweeps(root, args.launcher, args.lanes, args.reuse)
        records += sweeps.all_runs({name: splits[name] for name in args.datasets}, Path(args.out).resolve())
        wall["pyro_bnn"] = time.perf_counter() - start
    done = {(r["method"], r["data"], r["split"]) for r in kept}
    records += [r for r in kept if r["method"] in args.methods and r["data"] in args.datasets
                and r["split"] in splits[r["data"]]]
    jobs = [(m, name, s, root) for m in ("ensemble", "dropout") if m in args.methods
            for name in args.datasets for s in splits[name] if (m, name, s) not in done]
    if jobs:
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            for record in pool.imap_unordered(baseline_job, jobs):
                records.append(record)
        wall["baselines"] = time.perf_counter() - start
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")
    shown = [m for method in args.methods for m in ([method, PRESET_ALONE] if method == "pyro_bnn" else [method])]
    print(table(records, shown, args.datasets))
    print()
    print(compact_table(records, args.datasets))
    print()
    print("wall-clock minutes: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in wall.items()))


if __name__ == "__main__":
    main()
