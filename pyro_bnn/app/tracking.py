"""Runs tracked in MLflow: ``tracker=mlflow`` (``pip install 'pyro_bnn[mlflow]'``).

Each training run is an MLflow run: its composed config as parameters, its environment as tags (``env.<key>``), the
epochs' terms as metrics at their epoch (``train.loss``, ``train.nll``, ``train.kl``, ``train.kl.<layer>``...), the
final test metrics (``test.<metric>``), and the run dir's figures, ``metrics.json``, ``history.csv`` and
``posterior.pt`` as artifacts. A sweep is a parent run (tagged with its dir, :data:`SWEEP_DIR_TAG`) with one child run
per job, whatever the launcher (each job finds its parent by that tag); a run resumed from its checkpoint goes on in
its MLflow run (found by its run dir, :data:`RUN_DIR_TAG`); a run that fails or is interrupted ends ``FAILED`` or
``KILLED`` with its error as the tag ``error``.

The store is ``tracker.uri`` (default ``sqlite:///<the launching dir>/outputs/mlflow.db``, the artifacts beside it in
``outputs/mlartifacts``); ``mlflow ui --backend-store-uri <uri>`` shows it. Nothing here is imported unless
``tracker=mlflow``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from .run_dir import flat_config
from .schema import ConfigError

log = logging.getLogger(__name__)

#: The tag that names a run's dir (a resumed run finds its MLflow run by it).
RUN_DIR_TAG = "pyro_bnn.run_dir"
#: The tag that names a sweep's dir (a sweep's parent run; each job finds its parent by it).
SWEEP_DIR_TAG = "pyro_bnn.sweep_dir"
#: Seconds between two writes of the epochs' metrics (they are kept meanwhile; all are written at the end).
FLUSH_EVERY_S = 10.0
#: The run files logged as artifacts (besides the figures, ``*.png``).
ARTIFACTS = ("metrics.json", "history.csv", "posterior.pt")


def check_tracker(cfg: DictConfig) -> None:
    """Refuse ``tracker=mlflow`` where MLflow is not installed, naming the install command (no import)."""
    if cfg.tracker.name != "mlflow":
        return
    try:
        found = importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):  # a module without a spec (blocked) counts as absent
        found = False
    if not found:
        raise ConfigError("tracker=mlflow needs the mlflow package: pip install 'pyro_bnn[mlflow]' (or leave tracker "
                          "unset: tracker=none)")


def tracking_uri(cfg: DictConfig, cwd: Optional[str] = None) -> str:
    """``tracker.uri``, or the default store under ``outputs/`` of the launching dir ``cwd`` (None: Hydra's
    ``runtime.cwd``, the same for every job of a sweep wherever its launcher runs it; outside Hydra, this dir)."""
    if cfg.tracker.uri:
        return str(cfg.tracker.uri)
    if cwd is None:
        from hydra.core.hydra_config import HydraConfig

        cwd = HydraConfig.get().runtime.cwd if HydraConfig.initialized() else os.getcwd()
    return f"sqlite:///{Path(cwd).resolve() / 'outputs' / 'mlflow.db'}"


def _client(uri: str):
    # one connection per operation: a store used in a process forked from this one (a batch's finishers) never
    # shares a connection with it
    os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # the artifacts beside the store's file, not in the current dir
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except Exception:  # another job created it meanwhile
        return client.get_experiment_by_name(name).experiment_id


def _find_run(client, experiment_id: str, tag: str, value: str):
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = '{value}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def _store(cfg: DictConfig) -> Tuple[Any, str, str]:
    """The client of the config's store, its URI and the id of the config's experiment (made where missing)."""
    uri = tracking_uri(cfg)
    client = _client(uri)
    return client, uri, _experiment_id(client, cfg.tracker.experiment, uri)


def _sweep_parent(client, experiment_id: str, sweep_dir: Path):
    """The parent run of the sweep in ``sweep_dir``, or None where none was made."""
    return _find_run(client, experiment_id, SWEEP_DIR_TAG, str(sweep_dir.resolve()))


class SweepRun:
    """A sweep's parent run, found or made by the sweep's dir (:data:`SWEEP_DIR_TAG`)."""

    @staticmethod
    def start(cfg: DictConfig, sweep_dir: Path, overrides: List[str]) -> None:
        """Make the sweep's parent run (or, for a resumed sweep, mark its parent running again)."""
        client, uri, experiment_id = _store(cfg)
        found = _sweep_parent(client, experiment_id, sweep_dir)
        if found is not None:
            client.update_run(found.info.run_id, status="RUNNING")
            return
        run = client.create_run(experiment_id, run_name=f"sweep {sweep_dir.name}",
                                tags={SWEEP_DIR_TAG: str(sweep_dir.resolve())})
        client.log_param(run.info.run_id, "overrides", " ".join(overrides)[:6000])
        log.info("MLflow: sweep run %s in %s", run.info.run_id, uri)

    @staticmethod
    def end(cfg: DictConfig, sweep_dir: Path, status: str) -> None:
        """End the sweep's parent run with ``status`` (``FINISHED``, ``FAILED``, ``KILLED``)."""
        client, _, experiment_id = _store(cfg)
        found = _sweep_parent(client, experiment_id, sweep_dir)
        if found is not None:
            client.set_terminated(found.info.run_id, status=status)


class RunTracker:
    """One training run's MLflow run (:meth:`open`); its epochs (:meth:`log_epoch`), its end (:meth:`finish`,
    :meth:`fail`)."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id
        self._pending: List[Any] = []
        self._flushed_at = time.monotonic()

    @classmethod
    def open(cls, cfg: DictConfig, output_dir: Path, environment: Dict[str, Any], sweep_dir: Optional[Path] = None,
             resumed: bool = False) -> "RunTracker":
        """The MLflow run of the run in ``output_dir``: a resumed run's own (found by its dir), else a new one (a
        child of ``sweep_dir``'s parent run in a sweep) with the config's parameters and the environment's tags."""
        client, uri, experiment_id = _store(cfg)
        run_dir = str(Path(output_dir).resolve())
        found = _find_run(client, experiment_id, RUN_DIR_TAG, run_dir) if resumed else None
        if found is not None:
            client.update_run(found.info.run_id, status="RUNNING")
            log.info("MLflow: run %s resumed (%s)", found.info.run_id, uri)
            return cls(client, found.info.run_id)
        tags = {RUN_DIR_TAG: run_dir, **{f"env.{key}": str(value) for key, value in environment.items()}}
        parent = _sweep_parent(client, experiment_id, sweep_dir) if sweep_dir else None
        if parent is not None:
            tags["mlflow.parentRunId"] = parent.info.run_id
        run = client.create_run(experiment_id, run_name=Path(output_dir).name, tags=tags)
        from mlflow.entities import Param

        config = flat_config(OmegaConf.to_container(cfg, resolve=True))
        params = [Param(key, value[:6000]) for key, value in config.items() if key != "resume"]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
            client.log_batch(run.info.run_id, params=params[start:start + 100])
        log.info("MLflow: run %s (%s)", run.info.run_id, uri)
        return cls(client, run.info.run_id)

    def log_epoch(self, record: Dict[str, float]) -> None:
        """An epoch's record as ``train.<term>`` metrics at its epoch (written every :data:`FLUSH_EVERY_S`)."""
        from mlflow.entities import Metric

        stamp, epoch = int(time.time() * 1000), int(record["epoch"])
        self._pending += [Metric(f"train.{key}", float(value), stamp, epoch) for key, value in record.items()
                          if key not in ("epoch", "time_s")]
        if time.monotonic() - self._flushed_at >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), 1000):  # MLflow takes at most 1000 metrics a call
            self.client.log_batch(self.run_id, metrics=pending[start:start + 1000])
        self._flushed_at = time.monotonic()

    def finish(self, metrics: Dict[str, Any], output_dir: Path) -> None:
        """The final test metrics and the run files as artifacts; the run ends ``FINISHED``."""
        from mlflow.entities import Metric

        self.flush()
        stamp, epochs = int(time.time() * 1000), int(metrics.get("epochs", 0))
        finals = [Metric(f"test.{key}", float(value), stamp, epochs) for key, value in metrics["test"].items()
                  if isinstance(value, (int, float))]
        self.client.log_batch(self.run_id, metrics=finals)
        for path in sorted(Path(output_dir).glob("*.png")) + [Path(output_dir) / name for name in ARTIFACTS]:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status="FINISHED")

    def fail(self, error: BaseException, interrupted: bool = False) -> None:
        """End the run ``FAILED`` (``KILLED`` when ``interrupted``) with its error as the tag ``error``; never
        raises (the run's own error is what matters)."""
        try:
            self.flush()
            self.client.set_tag(self.run_id, "error", f"{type(error).__name__}: {error}"[:5000])
            self.client.set_terminated(self.run_id, status="KILLED" if interrupted else "FAILED")
        except Exception as problem:  # noqa: BLE001
            log.warning("MLflow: the run %s could not be marked failed: %s", self.run_id, problem)


def open_tracker(cfg: DictConfig, output_dir: Path, environment: Dict[str, Any], sweep_dir: Optional[Path],
                 resumed: bool) -> Optional[RunTracker]:
    """The run's :class:`RunTracker` with ``tracker=mlflow``, else None."""
    if cfg.tracker.name != "mlflow":
        return None
    return RunTracker.open(cfg, output_dir, environment, sweep_dir, resumed)
