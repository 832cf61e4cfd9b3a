"""The Hydra callbacks of the training app (``hydra.callbacks`` in ``conf/train.yaml``), loaded by every command:
they import the library only when they act (a refused config is refused without torch)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .config import override_keys, validate
from .run_dir import check_run_dir, check_writable, claim_run_dir
from .schema import ConfigError


class OutputDirCheck(Callback):
    """Hydra callback: refuse, in one line and before Hydra writes there, an output dir that cannot be created, a
    dir another command is running in now (:func:`~pyro_bnn.app.run_dir.claim_run_dir`), a new run into a dir that
    holds one, a refused resume, and a sweep into a dir that holds one; a refused command leaves the dir as it was."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        directory = Path(config.hydra.run.dir)
        self._check(lambda: check_writable(directory, "hydra.run.dir"))
        if int(os.environ.get("RANK", "0")) == 0:  # a data-parallel run's other ranks share rank 0's dir
            self._check(lambda: claim_run_dir(directory))  # first: of two runs started together, one goes on
            task = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
            self._check(lambda: check_run_dir(task, directory))

    #: The dir of the sweep this process launches (None outside a sweep's launcher): where a Ctrl-C's summary goes.
    sweep_dir = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        directory = Path(config.hydra.sweep.dir)
        holds_sweep = (directory / "multirun.yaml").exists() or any(directory.glob("*/.hydra"))
        if config.get("resume"):
            self._check_resumed_sweep(config, directory, holds_sweep)
        elif holds_sweep:
            sys.exit(f"error: hydra.sweep.dir={directory} already holds a sweep: leave hydra.sweep.dir unset (or pass "
                     "a fresh dir); to finish that sweep, run its command again with resume=true "
                     f"hydra.sweep.dir={directory}")
        self._check(lambda: check_writable(directory, "hydra.sweep.dir"))
        self._check_jobs(config)
        OutputDirCheck.sweep_dir = directory

    @staticmethod
    def _check_resumed_sweep(config: DictConfig, directory: Path, holds_sweep: bool) -> None:
        """A sweep resumed (``resume=true``) goes on in the dir of the sweep it finishes, with that sweep's overrides:
        its jobs keep their numbers and dirs."""
        import yaml

        if not (directory / "multirun.yaml").is_file():
            where = "holds no multirun.yaml" if holds_sweep else "holds no sweep"
            sys.exit(f"error: resume=true in a sweep finishes the sweep in hydra.sweep.dir, and {directory} {where}: "
                     "pass hydra.sweep.dir=<the dir of the sweep to finish>")
        earlier = (yaml.safe_load((directory / "multirun.yaml").read_text()) or {}).get("hydra", {})

        def task(overrides):
            return [o for o in overrides if o.removeprefix("++").removeprefix("+").split("=")[0] != "resume"]

        before, now = task(earlier.get("overrides", {}).get("task", [])), task(config.hydra.overrides.task)
        if before != now:
            sys.exit(f"error: resume=true but the sweep in {directory} was run with the overrides {' '.join(before)}, "
                     f"not {' '.join(now)}: resume it with its own overrides (plus resume=true)")

    @staticmethod
    def _check_jobs(config: DictConfig) -> None:
        """Compose and validate the config of every job of a basic sweep before the first job starts; refuse the sweep
        in one line naming the first bad job and key (other sweepers choose their jobs as they go). The batched
        launcher checks the configs it composes itself, all of them before any job (:func:`check_job`)."""
        from hydra import compose

        from .summarize import sweep_job_overrides

        if launcher_checks_jobs(config):
            return
        for number, overrides in enumerate(sweep_job_overrides(OmegaConf.to_container(config.hydra))):
            check_job(number, overrides, lambda overrides=overrides: compose(config_name="train", overrides=list(overrides)))

    @staticmethod
    def _check(check: Callable[[], None]) -> None:
        try:
            check()
        except ConfigError as err:
            sys.exit(f"error: {err}")


def check_job(number: int, overrides: Sequence[str], task_config: Callable[[], DictConfig]) -> None:
    """Validate job ``number``'s config (``task_config()``: composed, without Hydra's node); refuse the sweep in one
    line naming the job and its first bad key."""
    try:
        validate(task_config(), override_keys(overrides))
    except Exception as err:  # a composition error (Hydra's) or a ConfigError
        detail = " ".join(str(err).split())[:300]
        shown = " ".join(o.removeprefix("++") for o in overrides)  # as typed (main() adds ++ to option keys)
        sys.exit(f"error: job {number} of the sweep ({shown}): {detail}; nothing was run")


def launcher_checks_jobs(config: DictConfig) -> bool:
    """Whether the sweep's launcher composes and checks every job before the first one runs (``launcher=batched``
    with the basic sweeper's single batch)."""
    launcher = str(config.hydra.launcher.get("_target_", ""))
    sweeper = config.hydra.sweeper
    return launcher.endswith("pyro_bnn_batched_launcher.batched_launcher.BatchedLauncher") and (
        str(sweeper.get("_target_", "")).endswith("BasicSweeper") and sweeper.get("max_batch_size") is None)


class SweepSummary(Callback):
    """Hydra callback: rebuild the sweep summary (:func:`~pyro_bnn.app.summarize.summarize`) after each job of a
    multirun, and at its end."""

    #: False while a launcher that rebuilds it itself runs its jobs (``launcher=batched``: after each batch).
    after_each_job = True

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from .run_dir import STATUS_FILE
        from .summarize import summarize

        if not SweepSummary.after_each_job:
            return
        job_dir = Path(HydraConfig.get().runtime.output_dir)
        ended = (job_dir / "metrics.json").is_file() or (job_dir / STATUS_FILE).is_file()
        if HydraConfig.get().mode == RunMode.MULTIRUN and ended:
            summarize(job_dir.parent)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from .summarize import STATUSES, summarize

        rows = summarize(config.hydra.sweep.dir)
        counts = ", ".join(f"{n} {s}" for s in STATUSES if (n := sum(r["status"] == s for r in rows)))
        print(f"sweep done ({counts}): {Path(config.hydra.sweep.dir) / 'summary.md'} (and summary.csv, the plots, one "
              "dir per job beside them)")


class MlflowSweep(Callback):
    """Hydra callback: with ``tracker=mlflow``, a multirun's parent run in MLflow (:class:`~pyro_bnn.app.tracking.
    SweepRun`), made before its first job and ended with the sweep (``FINISHED``; a sweep that stops with a failed
    job or Ctrl-C: :meth:`end_open`)."""

    #: The config and dir of the sweep whose parent run this process made and has not ended.
    open_sweep = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if config.tracker.name != "mlflow":
            return
        from .tracking import SweepRun

        directory = Path(os.getcwd()) / config.hydra.sweep.dir
        SweepRun.start(config, directory, list(config.hydra.overrides.task))
        MlflowSweep.open_sweep = (config, directory)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        MlflowSweep.end_open("FINISHED")

    @staticmethod
    def end_open(status: str) -> None:
        """End the parent run this process made with ``status`` (nothing where there is none)."""
        if MlflowSweep.open_sweep is None:
            return
        from .tracking import SweepRun

        config, directory = MlflowSweep.open_sweep
        MlflowSweep.open_sweep = None
        SweepRun.end(config, directory, status)
