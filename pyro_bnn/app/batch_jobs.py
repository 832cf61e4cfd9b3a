"""The jobs of a batch (``launcher=batched``, :mod:`pyro_bnn.app.batched`), each in three steps: prepared alone
(:func:`prepare_job`), trained together (:func:`train_batch`), finished alone (:func:`finish_job`), as a job run
alone does each step; and a batch job's checkpoint resumed by a run alone (:func:`resume_alone`).

While a batch trains, each job's ``checkpoint.pt`` holds its own replicate's part of the batch's state
(:meth:`~pyro_bnn.training.replicate_fit.BatchRun.snapshot`), written after the first epoch, every 10 s at an
epoch's end, and at a stop (SIGINT/SIGTERM: the batch stops at the next step boundary, every job's checkpoint is
written and each job says it was interrupted). ``resume=true`` resumes the jobs whose checkpoints stand at one
position as one batch again, each exactly where it stopped; a job whose loss went bad fails with its own error while
the others train on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Dict, List, Optional, Tuple, Union

from omegaconf import DictConfig

log = logging.getLogger(__name__)


@dataclass
class PreparedJob:
    """A job ready to train: its config, run dir, data, model, guide, plan, environment, and the checkpoint it resumes
    from (None: from the start) (:func:`prepare_job`)."""

    cfg: DictConfig
    output_dir: Path
    data: Any
    ood: Any
    model: Any
    guide: Any
    plan: Any
    environment: Dict[str, Any]
    state: Optional[Dict[str, Any]] = None
    tracker: Any = None  # its MLflow run (tracker=mlflow: pyro_bnn.app.tracking.RunTracker), or None


class BatchInterrupted(Exception):
    """SIGINT/SIGTERM stopped a batch; its jobs' checkpoints were written where training could stop."""

    def __init__(self, signum: int, where: str):
        super().__init__(where)
        self.signum, self.where = signum, where


def prepare_job(cfg: DictConfig, output_dir: Path, given: Collection[str] = (), again: bool = False,
                sweep_dir: Optional[Path] = None) -> PreparedJob:
    """Everything a job does before training: validate, claim the run dir (read its checkpoint when resuming), set the
    seed, then :func:`prepared_job`.

    :param bool again: start from the beginning although ``cfg.resume`` (a sweep's job that left no checkpoint).
    :param sweep_dir: the sweep's dir (``tracker=mlflow``: the job's run is a child of the sweep's).
    """
    from .config import validate
    from .experiment import _start
    from .run_dir import claim_run_dir

    validate(cfg, given)
    claim_run_dir(output_dir)
    return prepared_job(cfg, output_dir, _start(cfg, output_dir, again=again), sweep_dir)


def prepared_job(cfg: DictConfig, output_dir: Path, state: Optional[Dict[str, Any]],
                 sweep_dir: Optional[Path] = None) -> PreparedJob:
    """Load the data, build the model and guide (the guide run once on the first minibatch), plan the schedule, open
    the job's MLflow run (``tracker=mlflow``)."""
    from ..batch_checks import first_batch
    from ..data.loaders import make_loader
    from ..guides import initialize_guide
    from .experiment import _build, _load_data, _plan, logged_environment
    from .tracking import open_tracker

    data, ood = _load_data(cfg)
    model, guide = _build(cfg, data, ood)
    plan = _plan(cfg, data)
    environment = logged_environment(cfg)
    # the guide's starting means drawn as a run alone draws them: after its loader's first pass began (a DataLoader
    # draws a seed from torch's stream), from the job's own seed
    initialize_guide(guide, *first_batch(make_loader(data.train, plan.schedule.batch_size, shuffle=True, seed=cfg.seed)))
    tracker = open_tracker(cfg, output_dir, environment, sweep_dir, resumed=state is not None)
    return PreparedJob(cfg, output_dir, data, ood, model, guide, plan, environment, state, tracker)


#: What training did for one job: its history, or the error that failed it alone.
Outcome = Union[List[Dict[str, float]], Exception]


def train_batch(jobs: List[PreparedJob]) -> Tuple[List[Outcome], List[float]]:
    """Train the prepared jobs, those that can take their steps together as one batch: those whose training sets are
    of one size (one schedule: as many steps of as many examples) and that stand at one position (from the start, or
    their checkpoints' epoch and step). Each job's outcome and its share of its batch's training time.

    :raises BatchInterrupted: on SIGINT/SIGTERM, once every job's checkpoint is written.
    """
    from .run_dir import StoppedAtOnce, signals_stop_training

    outcomes: List[Optional[Outcome]] = [None] * len(jobs)
    shares = [0.0] * len(jobs)
    batches: Dict[Any, List[int]] = {}
    for index, job in enumerate(jobs):
        # within a group (one config but for the batchable keys) the training set's size decides the schedule
        batches.setdefault((len(job.data.train), _position(job.state)), []).append(index)
    sizes = {examples for examples, _ in batches}
    with signals_stop_training() as received:
        for (examples, position), members in batches.items():
            if len(batches) > 1:
                names = ", ".join(jobs[i].output_dir.name for i in members)
                start_at = ("from the start" if position is None else
                            f"from their checkpoints, {position[0]} epochs and {position[1]} steps in")
                log.info("jobs %s: %s", names, f"{examples} training examples, {start_at}" if len(sizes) > 1 else start_at)
            start = time.perf_counter()
            try:
                results = _train_together([jobs[i] for i in members], received)
            except StoppedAtOnce as stop:
                raise BatchInterrupted(stop.signum, "a second signal stopped the batch in the middle of a step (each "
                                                    "job's checkpoint holds the last epoch it wrote)") from None
            for index, outcome in zip(members, results):
                outcomes[index] = outcome
                shares[index] = (time.perf_counter() - start) / len(members)
    return outcomes, shares


def _position(state: Optional[Dict[str, Any]]):
    return None if state is None else (state["epoch"], state["step"], state["in_epoch"])


def _train_together(jobs: List[PreparedJob], received: List[int]) -> List[Outcome]:
    """One batch of jobs at one position: each job's history, or its own error where its loss went bad."""
    from ..io.posterior import data_spec
    from ..objectives.elbo import ELBO_KL
    from ..training.loop import Hooks, TrainingInterrupted
    from ..training.replicate_data import StackedBatches
    from ..training.replicate_fit import ReplicatesFailed, fit_replicates
    from ..training.replicates import Replicates
    from ..training.schedules import Schedule
    from .run_dir import CHECKPOINT, CheckpointWriter

    first = jobs[0]
    schedule, inference = first.plan.schedule, first.cfg.inference
    replicates = Replicates([(job.model, job.guide) for job in jobs], kl=ELBO_KL[inference.elbo],
                            estimator=inference.estimator)
    seeds = [job.cfg.seed for job in jobs]
    writers = [CheckpointWriter(job.output_dir / CHECKPOINT, job.cfg, data_spec(job.data), lambda: bool(received))
               for job in jobs]

    def save(rows):
        for writer, row in zip(writers, rows):
            if row is not None:  # a failed job keeps the last checkpoint written before its loss went bad
                writer(row)

    states = [job.state for job in jobs]
    try:
        histories = fit_replicates(replicates, StackedBatches([job.data.train for job in jobs], schedule.batch_size, seeds),
                                   Schedule(schedule.epochs, schedule.lr, inference.lr_schedule),
                                   [job.plan.kl_weight for job in jobs], seeds,
                                   Hooks(on_checkpoint=save, should_stop=lambda: bool(received),
                                         checkpoint_due=writers[0].due),
                                   states=None if states[0] is None else states)
    except TrainingInterrupted as stop:
        raise BatchInterrupted(received[0], f"the batch stopped at epoch {stop.epoch + 1}, after step {stop.step}, "
                                            "with every job's checkpoint") from None
    except ReplicatesFailed as failure:
        return [FloatingPointError(failure.failed[index]) if index in failure.failed else history
                for index, history in enumerate(failure.histories)]
    log.info("batch of %d models trained: %d epochs", len(jobs), schedule.epochs)
    return histories


def finish_job(job: PreparedJob, history: List[Dict[str, float]], fit_s: float):
    """Everything a job does after training, as a job run alone does it: the epochs' log lines, the run files, the
    scored test predictive, ``metrics.json``; returns the metrics."""
    from .experiment import _write_results, record_run, tracked
    from .progress import EpochReporter
    from .run_record import RunRecord

    start = time.perf_counter()
    cfg, output_dir = job.cfg, job.output_dir
    with tracked(job.tracker):
        with EpochReporter(job.plan.schedule.epochs, tracker=job.tracker) as reporter:
            for record in history:  # a batch reports its epochs once trained (a resumed one: all of them)
                reporter(record)
        scored, health = _write_results(cfg, job.model, job.guide, job.data, job.ood, history, output_dir,
                                        job.plan.title)
        run = RunRecord(history, job.data, job.model, scored, health, job.plan.kl_weight, job.environment,
                        job.plan.schedule, fit_s, time_s=fit_s + time.perf_counter() - start)
        return record_run(cfg, run, None, output_dir, how="trained in a batch", tracker=job.tracker)


def resume_alone(cfg: DictConfig, output_dir: Path, state: Dict[str, Any],
                 sweep_dir: Optional[Path] = None) -> Dict[str, Any]:
    """A batch job's checkpoint resumed by a run alone: the job goes on as a batch of one, exactly as it would have
    gone on in its batch; returns its metrics."""
    from .experiment import tracked
    from .run_dir import RunInterrupted

    job = prepared_job(cfg, output_dir, state, sweep_dir)
    with tracked(job.tracker):
        try:
            (outcome,), (fit_s,) = train_batch([job])
        except BatchInterrupted as stop:
            raise RunInterrupted(stop.signum, output_dir, stop.where) from None
        if isinstance(outcome, Exception):
            raise outcome
    return finish_job(job, outcome, fit_s)
