"""One table and one picture per sweep: ``python -m pyro_bnn.app.summarize <sweep dir>`` (``pyro-bnn-summarize``).

A sweep's summary is built from the files on disk, never from the jobs' return
values (Hydra skips ``on_multirun_end`` when a job raises), so it can be rebuilt at
any time, for a finished, failed, interrupted or still running sweep. It writes, at
the sweep root:

* ``summary.csv``: one row per job: ``job``, the job's overrides as columns,
  ``status`` (``ok``, ``failed``, ``incomplete``), the final test metrics, the final
  training ``nll`` and ``kl``, ``time_s``, ``posterior_warning`` (where the posterior has barely moved or has
  collapsed to the prior: see :mod:`pyro_bnn.evaluation.health`) and ``error``;
* ``summary.md``: the same table in Markdown; where jobs differ only in :data:`REPLICATE_KEYS` (split, seed),
  a second table: per group of such replicates, the number of finished jobs and the mean +- standard error
  (sd / sqrt(n)) of every metric; ``summary.csv`` gives each row its group's ``replicates``, ``<metric>_mean``
  and ``<metric>_se``;
* ``summary_<key>.png`` for each swept key: test accuracy (or RMSE), NLL (or
  log-likelihood), ECE and the final KL against the key's values.

:class:`SweepSummary` is a Hydra callback (registered in ``conf/train.yaml``) that
rebuilds the summary after every job and at the end of the sweep.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from ..evaluation.health import health_warnings
from ..model.likelihoods import Categorical, Regression
from .plots import plot_sweep
from .run_dir import STATUS_FILE, write_csv, write_text

#: What a job's row can say: finished, failed (status.json), interrupted (status.json), started but neither
#: finished nor failed (running, or killed), or not started at all (in the sweep, no run dir yet).
RESULT_COLUMNS = ["train_nll", "train_kl", "time_s", "world_size", "device", "threads", "posterior_warning"]
#: What a row shows of a run's ``environment`` (metrics.json): how many processes, where, on how many threads.
ENVIRONMENT_COLUMNS = ("world_size", "device", "threads")
STATUSES = ("ok", "failed", "interrupted", "incomplete", "unreadable", "not started")
METRIC_COLUMNS = [*Categorical.metric_names, *Categorical.ood_metric_names, *Regression.metric_names]
#: Keys whose values make replicates of one experiment (what papers average over and report with a standard error).
REPLICATE_KEYS = ("data.split", "data.split_seed", "seed")
#: The columns a replicate group averages.
AVERAGED_COLUMNS = METRIC_COLUMNS + ["train_nll", "train_kl", "time_s"]


def job_dirs(sweep_dir: Path) -> List[Path]:
    """Run dirs under ``sweep_dir`` (those with a ``.hydra/overrides.yaml``), in job order."""
    dirs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")]
    return sorted(dirs, key=lambda p: _job_order(p.name))


def _job_order(name: str) -> tuple:
    """Jobs by number (``0, 1, ..., 10``), then any other dir by name."""
    return not name.isdigit(), int(name) if name.isdigit() else 0, name


def _override_columns(items: List[str]) -> Dict[str, str]:
    """``{key: value}`` of a job's override strings (``+``/``~`` dropped)."""
    pairs = ((key.lstrip("+~"), value) for key, value in (item.split("=", 1) for item in items if "=" in item))
    # resume=true is how a job was restarted, not what it computes: not a column
    return {key: value for key, value in pairs if key != "resume"}


def _overrides(run_dir: Path) -> Dict[str, str]:
    return _override_columns(yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or [])


def sweep_job_overrides(hydra_cfg: Dict[str, Any]) -> List[List[str]]:
    """The override strings of every job of a sweep, in job order, from its ``hydra`` config (a plain dict): the grid
    of Hydra's basic sweeper; [] for another sweeper (it chooses its jobs as it goes)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = hydra_cfg.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return []
    arguments = list((hydra_cfg.get("overrides") or {}).get("task", []))
    arguments += [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create().parse_overrides(arguments)
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def planned_jobs(sweep_dir: Path) -> List[Dict[str, str]]:
    """The overrides of every job the sweep in ``sweep_dir`` was to run (Hydra's basic sweeper: the grid of its
    ``multirun.yaml``), in job order; [] where that cannot be known (another sweeper, no ``multirun.yaml``)."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return []
    hydra_cfg = (yaml.safe_load(path.read_text()) or {}).get("hydra", {})
    return [_override_columns(job) for job in sweep_job_overrides(hydra_cfg)]


#: What a job's files can fail with when read (half-written, random bytes, another format): the job's row says so.
_UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, OSError, yaml.YAMLError)


def job_row(run_dir: Path) -> Dict[str, Any]:
    """The summary row of one run dir; a job whose files cannot be read is a row with status ``unreadable`` and the
    reason (the other jobs are summarised all the same)."""
    try:
        overrides = _overrides(run_dir)
    except _UNREADABLE as err:
        return {"job": run_dir.name, "status": "unreadable", "error": f".hydra/overrides.yaml: {_reason(err)}"}
    row: Dict[str, Any] = {"job": run_dir.name, **overrides}
    metrics_file, status_file = run_dir / "metrics.json", run_dir / STATUS_FILE
    try:
        if metrics_file.is_file():
            row.update(_metrics_columns(json.loads(metrics_file.read_text())), status="ok")
        elif status_file.is_file():
            status = json.loads(status_file.read_text())
            row.update({"status": status["status"], "error": status.get("error", "")})
        else:
            row["status"] = "incomplete"
    except _UNREADABLE as err:
        file = metrics_file if metrics_file.is_file() else status_file
        row = {"job": run_dir.name, **overrides, "status": "unreadable", "error": f"{file.name}: {_reason(err)}"}
    return row


def _metrics_columns(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """A finished job's columns from its ``metrics.json``."""
    row = {k: metrics["test"][k] for k in METRIC_COLUMNS if k in metrics["test"]}
    row.update({"train_nll": metrics["train"]["nll"], "train_kl": metrics["train"]["kl"], "time_s": metrics["time_s"]})
    row.update({k: metrics["environment"][k] for k in ENVIRONMENT_COLUMNS if k in metrics.get("environment", {})})
    warnings = health_warnings(metrics["posterior_health"]) if "posterior_health" in metrics else []
    if warnings:
        row["posterior_warning"] = "; ".join(w.split(":")[0] for w in warnings)
    return row


def _reason(err: Exception) -> str:
    text = " ".join(str(err).split())[:120]
    return f"{type(err).__name__}: {text}" if not isinstance(err, KeyError) else f"no {text} in it"


def _override_keys(row: Dict[str, Any]) -> List[str]:
    """The override keys of a summary row (the rest are its job, status, error and results)."""
    return [k for k in row if k not in ("job", "status", "error", *METRIC_COLUMNS, *RESULT_COLUMNS)]


def _columns(rows: List[Dict[str, Any]], override_keys: List[str]) -> List[str]:
    rest = ["status"] + [c for c in METRIC_COLUMNS + RESULT_COLUMNS + ["error"] if any(c in r for r in rows)]
    return ["job"] + override_keys + rest


def replicate_groups(rows: List[Dict[str, Any]], override_keys: List[str]) -> List[Dict[str, Any]]:
    """Per group of finished jobs that differ only in :data:`REPLICATE_KEYS`: the group's other override values,
    ``replicates`` (n), and ``<column>_mean`` / ``<column>_se`` (sd / sqrt(n), the sd with n - 1; blank for n = 1)
    of each averaged column; in order of first appearance."""
    group_keys = [k for k in override_keys if k not in REPLICATE_KEYS]
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for row in rows:
        if row["status"] == "ok":
            groups.setdefault(tuple(row.get(k, "") for k in group_keys), []).append(row)
    summaries = []
    for values, members in groups.items():
        summary: Dict[str, Any] = {**dict(zip(group_keys, values)), "replicates": len(members)}
        for column in AVERAGED_COLUMNS:
            numbers = [float(r[column]) for r in members if isinstance(r.get(column), (int, float))]
            if numbers:
                mean = sum(numbers) / len(numbers)
                summary[f"{column}_mean"] = mean
                if len(numbers) > 1:
                    sd = math.sqrt(sum((v - mean) ** 2 for v in numbers) / (len(numbers) - 1))
                    summary[f"{column}_se"] = sd / math.sqrt(len(numbers))
        summaries.append(summary)
    return summaries


def _replicate_markdown(groups: List[Dict[str, Any]], group_keys: List[str]) -> str:
    shown = [c for c in AVERAGED_COLUMNS if any(f"{c}_mean" in g for g in groups)]

    def cell(group, column):
        if f"{column}_mean" not in group:
            return ""
        se = group.get(f"{column}_se")
        return f"{group[f'{column}_mean']:.4g}" + (f" +- {se:.2g}" if se is not None else "")

    header = group_keys + ["replicates"] + shown
    lines = ["", "Mean +- standard error over the replicates (jobs that differ only in "
             f"{', '.join(REPLICATE_KEYS)}):", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(g.get(k, "")) for k in group_keys] + [str(g["replicates"])]
                                + [cell(g, c) for c in shown]) + " |" for g in groups]
    return "\n".join(lines) + "\n"


def _markdown(rows: List[Dict[str, Any]], columns: List[str]) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


@contextmanager
def _locked(sweep_dir: Path):
    """Serialise summary writers of one sweep (parallel jobs finish at the same time): a lock on the sweep dir
    itself, so that no lock file is left behind."""
    descriptor = os.open(sweep_dir, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def summarize(sweep_dir) -> List[Dict[str, Any]]:
    """Write ``summary.csv``, ``summary.md`` and the plots of ``sweep_dir``; returns the rows."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep dir at {sweep_dir}: pass the directory a -m run printed")
    dirs = job_dirs(sweep_dir)
    if dirs and not (sweep_dir / "multirun.yaml").is_file() and not any(d.name.isdigit() for d in dirs):
        raise FileNotFoundError(f"{sweep_dir} is not a sweep's dir (no multirun.yaml, no numbered job dirs): its runs "
                                f"({', '.join(d.name for d in dirs[:3])}, ...) are single runs; pass the dir a -m run "
                                "printed (outputs/multirun/<date>/<time>)")
    with _locked(sweep_dir):
        rows = [job_row(d) for d in dirs]
        if any(_override_keys(r) for r in rows):  # the jobs of a grid have overrides: one without is not of it
            for row in rows:
                if row["status"] != "unreadable" and not _override_keys(row):
                    row.update(status="unreadable", error=".hydra/overrides.yaml is empty: not a job of this grid")
        started = {r["job"] for r in rows}
        rows += [{"job": str(i), **overrides, "status": "not started"}
                 for i, overrides in enumerate(planned_jobs(sweep_dir)) if str(i) not in started]
        rows.sort(key=lambda r: _job_order(r["job"]))
        if not rows:
            raise FileNotFoundError(f"{sweep_dir} holds no job dirs (no */.hydra/overrides.yaml)")
        override_keys = list(dict.fromkeys(k for r in rows for k in _override_keys(r)))
        columns = _columns(rows, override_keys)
        markdown = _markdown(rows, columns)
        if any(k in REPLICATE_KEYS for k in override_keys):
            group_keys = [k for k in override_keys if k not in REPLICATE_KEYS]
            groups = replicate_groups(rows, override_keys)
            by_values = {tuple(g.get(k, "") for k in group_keys): g for g in groups}
            for row in rows:
                row.update({k: v for k, v in by_values.get(tuple(row.get(k, "") for k in group_keys), {}).items()
                            if k not in group_keys})
            columns += list(dict.fromkeys(k for g in groups for k in g if k not in group_keys))
            markdown += _replicate_markdown(groups, group_keys)
        write_csv(sweep_dir / "summary.csv", [{c: r.get(c, "") for c in columns} for r in rows])
        write_text(sweep_dir / "summary.md", markdown)
        swept = [k for k in override_keys if len({r.get(k) for r in rows}) > 1]
        if any(r["status"] == "ok" for r in rows):
            for key in swept:
                plot_sweep(rows, key, sweep_dir / f"summary_{key}.png", [k for k in swept if k != key])
    return rows


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pyro_bnn.app.summarize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="a multirun's directory, e.g. outputs/multirun/<date>/<time>")
    args = parser.parse_args(argv)
    try:
        rows = summarize(args.sweep_dir)
    except FileNotFoundError as err:
        parser.exit(2, f"error: {err}\n")
    print((Path(args.sweep_dir) / "summary.md").read_text(), end="")
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))


if __name__ == "__main__":
    main()
