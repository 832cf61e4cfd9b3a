"""One table and one picture per sweep: ``python -m pyro_bnn.summarize <sweep dir>``.

A sweep's summary is built from the files on disk, never from the jobs' return
values (Hydra skips ``on_multirun_end`` when a job raises), so it can be rebuilt at
any time, for a finished, failed, interrupted or still running sweep. It writes, at
the sweep root:

* ``summary.csv``: one row per job: ``job``, the job's overrides as columns,
  ``status`` (``ok``, ``failed``, ``incomplete``), the final test metrics, the final
  training ``nll`` and ``kl``, ``time_s``, ``posterior_warning`` (where the posterior has barely moved or has
  collapsed to the prior: see :mod:`pyro_bnn.health`) and ``error``;
* ``summary.md``: the same table in Markdown;
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .health import health_warnings
from .outputs import write_csv, write_text

STATUS_FILE = "status.json"
METRIC_COLUMNS = ["accuracy", "nll", "ece", "brier", "ood_auroc_entropy", "ood_auroc_mutual_information",
                  "rmse", "log_likelihood", "coverage_90"]


def job_dirs(sweep_dir: Path) -> List[Path]:
    """Run dirs under ``sweep_dir`` (those with a ``.hydra/overrides.yaml``), in job order."""
    dirs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")]
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def _overrides(run_dir: Path) -> Dict[str, str]:
    items = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []
    pairs = (item.split("=", 1) for item in items if "=" in item)
    return {key.lstrip("+~"): value for key, value in pairs}


def job_row(run_dir: Path) -> Dict[str, Any]:
    """The summary row of one run dir."""
    row: Dict[str, Any] = {"job": run_dir.name, **_overrides(run_dir)}
    metrics_file, status_file = run_dir / "metrics.json", run_dir / STATUS_FILE
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        row["status"] = "ok"
        row.update({k: metrics["test"][k] for k in METRIC_COLUMNS if k in metrics["test"]})
        row.update({"train_nll": metrics["train"]["nll"], "train_kl": metrics["train"]["kl"],
                    "time_s": metrics["time_s"]})
        warnings = health_warnings(metrics["posterior_health"]) if "posterior_health" in metrics else []
        if warnings:
            row["posterior_warning"] = "; ".join(w.split(":")[0] for w in warnings)
    elif status_file.is_file():
        status = json.loads(status_file.read_text())
        row.update({"status": status["status"], "error": status.get("error", "")})
    else:
        row["status"] = "incomplete"
    return row


def _columns(rows: List[Dict[str, Any]], override_keys: List[str]) -> List[str]:
    rest = ["status"] + [c for c in METRIC_COLUMNS + ["train_nll", "train_kl", "time_s", "posterior_warning", "error"]
                         if any(c in r for r in rows)]
    return ["job"] + override_keys + rest


def _as_number(value) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _markdown(rows: List[Dict[str, Any]], columns: List[str]) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _plot(rows: List[Dict[str, Any]], key: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["status"] == "ok"]
    regression = any("rmse" in r for r in done)
    panels = (["rmse", "log_likelihood"] if regression else ["accuracy", "nll", "ece"]) + ["train_kl"]
    values = [r.get(key, "") for r in done]
    numeric = all(_as_number(v) is not None for v in values)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), constrained_layout=True)
    for ax, metric in zip(axes, panels):
        if numeric:
            pairs = sorted((_as_number(r[key]), r[metric]) for r in done if metric in r)
            ax.plot([p[0] for p in pairs], [p[1] for p in pairs], "o-")
            xs = [p[0] for p in pairs]
            if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
        else:
            ax.plot(values, [r.get(metric, math.nan) for r in done], "o")
        ax.set(xlabel=key, title={"train_kl": "final KL (nats)"}.get(metric, f"test {metric}"))
        if metric == "train_kl":
            ax.set_yscale("log")
    fig.suptitle(f"{len(done)} of {len(rows)} jobs done")
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


@contextmanager
def _locked(sweep_dir: Path):
    """Serialise summary writers of one sweep (parallel jobs finish at the same time)."""
    with open(sweep_dir / ".summary.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def summarize(sweep_dir) -> List[Dict[str, Any]]:
    """Write ``summary.csv``, ``summary.md`` and the plots of ``sweep_dir``; returns the rows."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep dir at {sweep_dir}: pass the directory a -m run printed")
    with _locked(sweep_dir):
        rows = [job_row(d) for d in job_dirs(sweep_dir)]
        if not rows:
            raise FileNotFoundError(f"{sweep_dir} holds no job dirs (no */.hydra/overrides.yaml)")
        override_keys = list(dict.fromkeys(k for r in rows for k in _overrides(sweep_dir / r["job"])))
        columns = _columns(rows, override_keys)
        write_csv(sweep_dir / "summary.csv", [{c: r.get(c, "") for c in columns} for r in rows])
        write_text(sweep_dir / "summary.md", _markdown(rows, columns))
        swept = [k for k in override_keys if len({r.get(k) for r in rows}) > 1]
        if any(r["status"] == "ok" for r in rows):
            for key in swept:
                _plot(rows, key, sweep_dir / f"summary_{key}.png")
    return rows


class SweepSummary(Callback):
    """Hydra callback: rebuild the sweep summary after each job of a multirun, and at its end."""

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.get().mode == RunMode.MULTIRUN:
            summarize(Path(HydraConfig.get().runtime.output_dir).parent)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        summarize(config.hydra.sweep.dir)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pyro_bnn.summarize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", help="a multirun's directory, e.g. outputs/multirun/<date>/<time>")
    args = parser.parse_args(argv)
    try:
        rows = summarize(args.sweep_dir)
    except FileNotFoundError as err:
        parser.exit(2, f"error: {err}\n")
    print((Path(args.sweep_dir) / "summary.md").read_text(), end="")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "incomplete")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))


if __name__ == "__main__":
    main()
