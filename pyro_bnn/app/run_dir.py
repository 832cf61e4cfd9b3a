"""The files of a run directory: every one written atomically, the status, the checkpoint, and signals.

* :func:`claim_run_dir`: one run at a time in a run dir (a lock the process holds until it exits);
* :func:`write_text`, :func:`write_json`, :func:`write_csv`: a crash never leaves a half-written file
  (:func:`pyro_bnn.io.files.replacing`);
* ``status.json`` (:func:`write_status`): only in a run that failed or was interrupted, what happened;
* ``checkpoint.pt`` (:func:`save_checkpoint`, :func:`resume_state`): the training state of
  :func:`pyro_bnn.fit` with the run's config, while training;
* :func:`signals_stop_training`: SIGINT/SIGTERM become a request to stop at the next step boundary.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import math
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from omegaconf import DictConfig, OmegaConf

from ..io.files import read_file, replacing, save_file
from .schema import ConfigError

log = logging.getLogger(__name__)

#: File name of the training checkpoint in a run dir.
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "pyro_bnn.checkpoint/2"
#: After the first epoch, an epoch's end rewrites checkpoint.pt only when this many seconds have passed since the
#: last write: a checkpoint holds the whole history, so writing one after every epoch of a run of hundreds of short
#: epochs cost as much as its training (the UCI preset on yacht: 12 of 29 s). A stop (SIGINT/SIGTERM) always writes.
CHECKPOINT_EVERY_S = 10.0
#: What happened to a run that did not finish (``failed`` or ``interrupted``).
STATUS_FILE = "status.json"
#: The files a training run writes into its run dir (Hydra adds ``.hydra/`` and ``train.log``).
RUN_FILES = ("metrics.json", "posterior.pt", CHECKPOINT, "history.csv", STATUS_FILE)


class RunDirRefused(ConfigError):
    """A command that would overwrite or damage the run already in its run dir, refused before it writes anything."""


def write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash never leaves a half-written file."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf: not JSON) as None, so that strict parsers read the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def write_json(path, data: Dict) -> None:
    """Write ``data`` as strict JSON (non-finite numbers as null), atomically."""
    write_text(path, json.dumps(strict_json(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_csv(path, rows: Iterable[Dict]) -> None:
    rows = list(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_status(run_dir: Path, status: str, error: str) -> None:
    """``status.json``: ``{"status": ..., "error": ...}`` of a run that did not finish."""
    write_json(Path(run_dir) / STATUS_FILE, {"status": status, "error": error})


def check_writable(output_dir: Path, key: str = "hydra.run.dir (or hydra.sweep.dir)") -> None:
    """A :class:`ConfigError` naming ``key`` when ``output_dir`` cannot be created or written."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write_test.{os.getpid()}"  # one per process: the ranks of a run probe the same dir
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"the output dir {output_dir} cannot be written ({err.strerror}): "
                          f"set {key} to a writable place") from None


#: The run dirs this process holds (:func:`claim_run_dir`): open descriptors with their locks, until the process exits.
_CLAIMED: Dict[Path, int] = {}


def claim_run_dir(output_dir: Path) -> None:
    """Hold ``output_dir`` for this process until it exits, or refuse it because another process holds it.

    The claim is an exclusive ``flock`` on the dir itself, taken in one atomic step: of two commands started together
    into one dir, one holds it and the other is refused before it writes anything. The kernel releases it when the
    process ends, however it ends (a killed run's dir can be resumed at once). On a file system without locks (some
    network file systems) nothing is held and only :func:`check_run_dir`'s check of the files applies.
    """
    output_dir = Path(output_dir).resolve()
    if output_dir in _CLAIMED:
        return
    handle = os.open(output_dir, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        raise RunDirRefused(f"hydra.run.dir={output_dir} is in use by another run started there now: leave "
                            "hydra.run.dir unset (or pass a fresh dir) for a new run") from None
    except OSError:  # no locks on this file system
        os.close(handle)
        return
    _CLAIMED[output_dir] = handle


def earlier_run_files(output_dir: Path, hydra_files: bool = True) -> List[str]:
    """The files of an earlier run in ``output_dir`` (with ``hydra_files``, Hydra's ``.hydra/`` and ``train.log`` too)."""
    names = list(RUN_FILES) + ([".hydra", "train.log"] if hydra_files else [])
    return [name for name in names if (Path(output_dir) / name).exists()]


def check_run_dir(cfg: DictConfig, output_dir: Path, hydra_files: bool = True) -> None:
    """Refuse a run that would write over the run in ``output_dir``: a new run where one was (resume=true or a
    fresh dir), or a resume that :func:`resume_state` refuses. Raises :class:`RunDirRefused`; reads, never writes.

    :param bool hydra_files: count Hydra's files as an earlier run's (before Hydra wrote this run's own).
    """
    output_dir = Path(output_dir)
    if cfg.resume:
        resume_state(cfg, output_dir)
        return
    held = earlier_run_files(output_dir, hydra_files)
    if held:
        fresh = "leave hydra.run.dir unset (or pass a fresh dir) for a new run"
        if (output_dir / CHECKPOINT).is_file():
            advice = f"{fresh}, or add resume=true to continue it from its {CHECKPOINT}"
        elif (output_dir / "metrics.json").is_file():
            advice = f"that run finished: {fresh}"
        else:
            advice = f"that run stopped before its first {CHECKPOINT} (nothing to resume): {fresh}"
        raise RunDirRefused(f"hydra.run.dir={output_dir} already holds a run ({', '.join(held)}): {advice}")


def save_checkpoint(path, training: Dict[str, Any], cfg: DictConfig, spec: Dict[str, Any]) -> None:
    """Write a training state of :func:`pyro_bnn.fit` with its config, atomically."""
    save_file(path, {"format": CHECKPOINT_FORMAT, "config": OmegaConf.to_container(cfg, resolve=True),
                     "data": spec, "training": training})


class CheckpointWriter:
    """``fit``'s ``on_checkpoint`` for a run dir: :func:`save_checkpoint` at the first call, at a stop, and when
    ``every_s`` seconds have passed since the last write.

    :param stopping: true once a signal asked the run to stop (its checkpoint is written at once).
    """

    def __init__(self, path, cfg: DictConfig, spec: Dict[str, Any], stopping: Callable[[], bool],
                 every_s: float = CHECKPOINT_EVERY_S):
        self.path, self.cfg, self.spec, self.stopping, self.every_s = path, cfg, spec, stopping, every_s
        self._written_at: Optional[float] = None

    def due(self) -> bool:
        """Whether the next call writes (``fit``'s ``checkpoint_due``: no state is taken for a call that would not)."""
        return self._written_at is None or self.stopping() or time.monotonic() - self._written_at >= self.every_s

    def __call__(self, training: Dict[str, Any]) -> None:
        if self.due():
            save_checkpoint(self.path, training, self.cfg, self.spec)
            self._written_at = time.monotonic()


def load_checkpoint(path) -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``: never executes code)."""
    return read_file(path, CHECKPOINT_FORMAT, "checkpoint")


def resume_state(cfg: DictConfig, output_dir: Path) -> Dict[str, Any]:
    """The training state in ``output_dir``'s checkpoint, if it was written with the same config as ``cfg``."""
    path = output_dir / CHECKPOINT
    if not path.is_file():
        finished = (output_dir / "metrics.json").is_file()
        stopped = (output_dir / STATUS_FILE).is_file()
        raise RunDirRefused(
            f"resume=true but {output_dir} has no {CHECKPOINT}"
            + (": that run finished (metrics.json is there)" if finished else
               f": the run there stopped before its first {CHECKPOINT} (see {STATUS_FILE}), so there is nothing to "
               "resume: run it afresh (leave resume and hydra.run.dir unset)" if stopped else
               ": pass hydra.run.dir=<the run dir of the interrupted run>")
        )
    saved = load_checkpoint(path)
    now = OmegaConf.to_container(cfg, resolve=True)
    diff = sorted(set(flat_config(saved["config"]).items()) ^ set(flat_config(now).items()))
    keys = sorted({k for k, _ in diff if k != "resume"})
    if keys:
        raise RunDirRefused(f"resume=true but the config differs from the checkpoint's at {', '.join(keys)}: "
                          "resume with the overrides of the interrupted run")
    return saved["training"]


def sweep_job_stage(output_dir: Path) -> str:
    """Where a job of a sweep resumed with ``resume=true`` stands: ``"finished"`` (``metrics.json``, no checkpoint:
    left as it is), ``"resume"`` (from its ``checkpoint.pt``), or ``"again"`` (it left no checkpoint: it failed or
    was stopped before its first, or never started; it runs from the beginning)."""
    output_dir = Path(output_dir)
    if (output_dir / CHECKPOINT).is_file():
        return "resume"
    return "finished" if (output_dir / "metrics.json").is_file() else "again"


def finished_job(output_dir: Path) -> Dict[str, Any]:
    """A resumed sweep's job that had finished: its metrics, its files left as they are."""
    log.info("%s finished earlier: its files are left as they are", output_dir)
    return json.loads((Path(output_dir) / "metrics.json").read_text())


def flat_config(tree, prefix: str = "") -> Dict[str, str]:
    """A config's container as ``{dotted key: value as text}`` (a list as its text)."""
    if isinstance(tree, dict):
        out: Dict[str, str] = {}
        for key, value in tree.items():
            out.update(flat_config(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: str(tree)}


class RunInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after writing its checkpoint."""

    def __init__(self, signum: int, output_dir: Path, where: str):
        self.signum = signum
        resume = (f"the checkpoint is in {output_dir / CHECKPOINT}. Resume with the same overrides plus: resume=true "
                  f"hydra.run.dir={output_dir}" if (output_dir / CHECKPOINT).is_file() else
                  "start the run again in a fresh dir")
        super().__init__(f"{signal.Signals(signum).name} received: {where}; {resume}")


class StoppedAtOnce(Exception):
    """A second SIGINT/SIGTERM while a step ran: training stopped there, without finishing the step."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def signals_stop_training() -> Iterator[List[int]]:
    """Turn a first SIGINT/SIGTERM into a request to stop at the next step boundary (the list of received signals);
    a second one raises :class:`StoppedAtOnce` where the process is (a long step need not finish)."""
    received: List[int] = []
    previous = {}

    def receive(number, frame):
        received.append(number)
        if len(received) > 1:
            raise StoppedAtOnce(number)

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, receive)
        except ValueError:  # not the main thread: the launcher handles signals
            pass
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
