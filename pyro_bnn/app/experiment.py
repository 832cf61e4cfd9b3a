"""The training experiment: :func:`train` (a pure function of the config and an output directory) and its named
steps; the entry point around it (``python -m pyro_bnn.train``, Hydra) is :mod:`pyro_bnn.app.train`."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Collection, Dict, Iterator, List, NamedTuple, Optional, Tuple

import pyro
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import TensorDataset

from ..data.loaders import make_loader
from ..data.ood import load_ood
from ..data.splits import DataSplits
from ..evaluation.health import health_warnings, posterior_health
from ..evaluation.predictive import posterior_samples, score
from ..guides import is_mean_field
from ..io.posterior import data_spec, save_posterior
from ..training.distributed import world
from ..training.loop import Hooks, TrainingInterrupted, fit
from ..training.replicate_fit import REPLICATE_STATE
from ..training.schedules import KLWeight, Schedule
from .build import (
    RunSchedule,
    build_guide,
    build_model,
    build_objective,
    load_run_data,
    option_name,
    training_schedule,
)
from .config import build_kl_weight, library_errors, validate
from .plots import plot_elbo_terms, plot_posterior_health
from .progress import EpochReporter, require_tensorboard
from .report import regression_curve, write_figures, write_nuts_comparison
from .run_dir import (
    CHECKPOINT,
    STATUS_FILE,
    CheckpointWriter,
    RunInterrupted,
    StoppedAtOnce,
    check_run_dir,
    check_writable,
    resume_state,
    signals_stop_training,
    write_csv,
    write_json,
)
from .run_record import RunRecord, Scored, run_device, run_environment, run_metrics
from .tracking import RunTracker, open_tracker

log = logging.getLogger(__name__)

def train(cfg: DictConfig, output_dir, progress: bool = False, given: Collection[str] = (),
          again: bool = False, sweep_dir: Optional[Path] = None) -> Dict[str, Any]:
    """Train the posterior that ``cfg`` describes; write the run files into ``output_dir``.

    The training state goes to ``checkpoint.pt`` after every epoch and on SIGINT/SIGTERM (then
    :class:`~pyro_bnn.app.run_dir.RunInterrupted` is raised); ``cfg.resume`` continues from it to the same
    result as an uninterrupted run. The checkpoint is removed once the run has finished.

    :param bool progress: show a tqdm bar over the epochs (when ``cfg.progress`` and stderr is a terminal).
    :param given: the keys the command line set (:func:`~pyro_bnn.app.config.override_keys`; see
        :func:`~pyro_bnn.app.config.check_values`).
    :param bool again: start from the beginning although ``cfg.resume`` (a resumed sweep's job that left no
        checkpoint: :func:`~pyro_bnn.app.run_dir.sweep_job_stage`).
    :param sweep_dir: the dir of the sweep this run is a job of (``tracker=mlflow``: its parent run), or None.
    :return: the content of ``metrics.json`` (plain numbers).
    """
    validate(cfg, given)
    output_dir = Path(output_dir)
    state = _start(cfg, output_dir, again)
    if state is not None and state.get("format") == REPLICATE_STATE:  # a batch job's checkpoint (launcher=batched)
        from .batch_jobs import resume_alone

        return resume_alone(cfg, output_dir, state, sweep_dir)
    data, ood = _load_data(cfg)
    model, guide = _build(cfg, data, ood)
    plan = _plan(cfg, data)
    environment = logged_environment(cfg)
    first_rank = world()[0] == 0  # a data-parallel run's rank 0 reports and writes; the other ranks only train
    tracker = open_tracker(cfg, output_dir, environment, sweep_dir, resumed=state is not None) if first_rank else None
    with tracked(tracker):
        start = time.perf_counter()
        reporter = EpochReporter(plan.schedule.epochs, progress=progress and cfg.progress and first_rank,
                                 tensorboard_dir=output_dir / "tensorboard" if cfg.tensorboard and first_rank else None,
                                 tracker=tracker)
        with reporter:
            history = _fit(cfg, model, guide, data, state, output_dir, reporter, plan)
            fit_s = time.perf_counter() - start
            if not first_rank:
                return {}  # a data-parallel run's other ranks: rank 0 writes the run's files
            scored, health = _write_results(cfg, model, guide, data, ood, history, output_dir, plan.title)
            reporter.add_metrics(scored.metrics, plan.schedule.epochs)
        run = RunRecord(history, data, model, scored, health, plan.kl_weight, environment, plan.schedule, fit_s,
                        time_s=time.perf_counter() - start)
        reference = _reference(cfg, model, guide, scored, data, output_dir) if cfg.reference.method == "nuts" else None
        return record_run(cfg, run, reference, output_dir, tracker=tracker)


@contextmanager
def tracked(tracker: Optional[RunTracker]) -> Iterator[None]:
    """A run's work, its MLflow run (if any) ended ``FAILED`` / ``KILLED`` when the work raises."""
    try:
        yield
    except BaseException as err:
        if tracker is not None:
            tracker.fail(err, interrupted=isinstance(err, (KeyboardInterrupt, RunInterrupted)))
        raise


def logged_environment(cfg: DictConfig) -> Dict[str, Any]:
    """The run's environment (:func:`~pyro_bnn.app.run_record.run_environment`), said in the log."""
    environment = run_environment(cfg)
    log.info("environment: %s", ", ".join(f"{k} {v}" for k, v in environment.items()))
    return environment


def record_run(cfg: DictConfig, run: RunRecord, reference: Optional[Dict], output_dir: Path,
               how: str = "", tracker: Optional[RunTracker] = None) -> Dict[str, Any]:
    """The end of every run: ``metrics.json`` (and the MLflow run's end), the checkpoint and ``status.json`` of an
    interrupted run removed (it has finished now), the summary and the run files' dir in the log (``how`` it trained,
    where that is worth a word); returns the metrics."""
    metrics = run_metrics(cfg, run, reference)
    write_json(output_dir / "metrics.json", metrics)
    if tracker is not None:
        tracker.finish(metrics, output_dir)
    (output_dir / CHECKPOINT).unlink(missing_ok=True)
    (output_dir / STATUS_FILE).unlink(missing_ok=True)
    _log_summary(metrics, run.kl_weight)
    log.info("run files: %s (%smetrics.json, history.csv, posterior.pt, the figures, train.log)", output_dir.resolve(),
             f"{how}; " if how else "")
    return metrics


def _start(cfg: DictConfig, output_dir: Path, again: bool = False) -> Optional[Dict]:
    """Check the output dir (and read its checkpoint when resuming: the state to resume from, else None); set up the
    process (threads, a clean param store, the seed). ``again``: a resumed sweep's job that left no checkpoint
    starts from the beginning, over what it left."""
    check_writable(output_dir)
    state = None
    if cfg.resume and not again:
        state = resume_state(cfg, output_dir)
    elif not again:
        check_run_dir(cfg, output_dir, hydra_files=False)  # Hydra has written its own files by now
    _set_up_process(cfg)
    return state


def _build(cfg: DictConfig, data: DataSplits, ood) -> Tuple[nn.Module, nn.Module]:
    """The model (on the run's device) and the guide of ``cfg`` for ``data``, in the config's words when refused."""
    with library_errors(cfg, "model"):
        model = build_model(cfg, data_spec(data)).to(run_device(cfg.device))
    with library_errors(cfg, "guide"):
        guide = build_guide(cfg.guide, model)
    log.info("data=%s (%d train, %d test%s), model=%s, likelihood=%s, prior=%r, guide=%s, elbo=%s",
             data.name, len(data.train), len(data.test), f", OOD {cfg.data.ood} {len(ood)}" if ood is not None else "",
             option_name(cfg.model), type(model.likelihood).__name__, model.prior, option_name(cfg.guide),
             cfg.inference.elbo)
    floor = getattr(model.likelihood, "min_scale", None)
    spread = float(data.train.tensors[1].float().std()) if floor is not None and data.num_train > 1 else None
    if spread is not None and floor > spread:
        units = "of the standardised targets (sd 1)" if data.target_std != 1.0 else "of the targets"
        log.warning("likelihood.min_scale=%g is in the units %s and above their sd on the training split (%.3g): "
                    "the noise sd can never fall below it", floor, units, spread)
    return model, guide


class RunPlan(NamedTuple):
    """How the run trains: its :class:`~pyro_bnn.app.build.RunSchedule`, its KL weighting over that many epochs,
    and the plots' title that says so."""

    schedule: RunSchedule
    kl_weight: KLWeight
    title: str


def _plan(cfg: DictConfig, data: DataSplits) -> RunPlan:
    """The run's schedule for its data (the KL warm-up checked against its epochs, before any training)."""
    inference = cfg.inference
    schedule = training_schedule(inference, data.num_train, cfg.data.batch_size)
    with library_errors(cfg, "inference"):
        kl_weight = Schedule(schedule.epochs, schedule.lr, inference.lr_schedule, build_kl_weight(inference)).kl_weight
    if inference.steps:
        log.info("inference.steps=%d: %d epochs of %d steps (inference.epochs=%d is not used)", inference.steps,
                 schedule.epochs, schedule.steps_per_epoch, inference.epochs)
    if schedule.large_data:
        log.info("size rule: %d training examples > inference.large_data.above=%d: %d epochs of %d steps of %d "
                 "examples at lr %g", data.num_train, cfg.inference.large_data.above, schedule.epochs,
                 schedule.steps_per_epoch, schedule.batch_size, schedule.lr)
    return RunPlan(schedule, kl_weight, run_title(cfg, data.name, kl_weight, schedule.epochs))


def _write_results(cfg: DictConfig, model, guide, data: DataSplits, ood, history: List[Dict[str, float]],
                   output_dir: Path, title: str) -> Tuple[Scored, Dict[str, Any]]:
    """``history.csv``, ``elbo_terms.png``, ``posterior.pt``, the test predictive's figures and the posterior's health;
    returns the scored test predictive and the health."""
    write_csv(output_dir / "history.csv", history)
    plot_elbo_terms(history, output_dir / "elbo_terms.png", title=title)
    save_posterior(output_dir / "posterior.pt", model, guide, data_spec(data), OmegaConf.to_container(cfg, resolve=True))
    scored = _score(cfg, model, guide, data, ood)
    write_figures(output_dir, model, scored, data, cfg.data.ood, title)
    return scored, _posterior_health(cfg, model, guide, output_dir, title)


def run_title(cfg: DictConfig, data_name: str, kl_weight: KLWeight, epochs: int) -> str:
    """The plots' title: data, model, guide, ELBO, and the KL weight where it is not the exact ELBO."""
    return f"{data_name}, {option_name(cfg.model)}, {option_name(cfg.guide)}, elbo={cfg.inference.elbo}" + (
        "" if kl_weight.is_exact_elbo(epochs) else f"\n(tempered, not the exact ELBO: {kl_weight.describe(epochs)})")


def _set_up_process(cfg: DictConfig) -> None:
    """The process-wide settings of a run: torch threads, a clean param store, the seed."""
    if cfg.tensorboard:
        require_tensorboard()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pyro.clear_param_store()
    pyro.set_rng_seed(cfg.seed)


def _load_data(cfg: DictConfig) -> Tuple[DataSplits, Optional[TensorDataset]]:
    data = load_run_data(cfg.data)
    return data, load_ood(data, cfg.data.ood, cfg.data.root, cfg.data.download)


def _fit(cfg: DictConfig, model, guide, data: DataSplits, state: Optional[Dict], output_dir: Path,
         reporter: EpochReporter, plan: RunPlan) -> List[Dict[str, float]]:
    """:func:`pyro_bnn.fit` with the run's checkpoint, and SIGINT/SIGTERM turned into :class:`RunInterrupted`."""
    inference, schedule = cfg.inference, plan.schedule
    rank, world_size = world()
    with signals_stop_training() as received:
        save = CheckpointWriter(output_dir / CHECKPOINT, cfg, data_spec(data), stopping=lambda: bool(received))
        try:
            return fit(
                model, guide, make_loader(data.train, schedule.batch_size, shuffle=True, seed=cfg.seed, rank=rank,
                                          world_size=world_size),
                Schedule(schedule.epochs, schedule.lr, inference.lr_schedule, plan.kl_weight), build_objective(inference),
                Hooks(callback=reporter if rank == 0 else None, on_checkpoint=save if rank == 0 else None,
                      should_stop=lambda: bool(received), checkpoint_due=save.due),
                state=state, distributed=world_size > 1,
            )
        except TrainingInterrupted as stop:
            raise RunInterrupted(received[0], output_dir, str(stop)) from None
        except StoppedAtOnce as stop:
            kept = ("the checkpoint holds the last epoch it wrote" if (output_dir / CHECKPOINT).is_file()
                    else "no epoch had finished, so there is no checkpoint to resume from")
            raise RunInterrupted(stop.signum, output_dir, f"a second signal stopped it in the middle of a step ({kept})"
                                 ) from None


def _score(cfg: DictConfig, model, guide, data: DataSplits, ood) -> Scored:
    """The test predictive (and OOD scores) of the posterior, drawn from the run's seed as ``evaluate`` draws it."""
    pyro.set_rng_seed(cfg.seed)
    test_loader = make_loader(data.test, cfg.data.test_batch_size)
    samples = posterior_samples(model, guide, test_loader, cfg.eval.num_samples)
    test, raw = score(model, samples, test_loader,
                      make_loader(ood, cfg.data.test_batch_size) if ood is not None else None)
    curve = regression_curve(model, samples) if data.in_shape == (1,) else None
    return Scored(test, samples, raw, test_loader, curve)


def _posterior_health(cfg: DictConfig, model, guide, output_dir: Path, title: str) -> Dict[str, Any]:
    """Per-site posterior health of a mean-field run (``posterior_health.png``, warnings in the log); {} otherwise."""
    if not is_mean_field(guide):
        return {}
    health = posterior_health(model, guide, cfg.guide.init_scale)
    plot_posterior_health(health, output_dir / "posterior_health.png", title=f"{title}: posterior health")
    for warning in health_warnings(health):
        log.warning("posterior health: %s", warning)
    return health


def _reference(cfg: DictConfig, model, guide, scored: Scored, data: DataSplits, output_dir: Path) -> Dict:
    """NUTS on the same model and data, drawn from the run's seed (``reference.json``, ``reference.png``); the
    comparison."""
    options = {k: v for k, v in OmegaConf.to_container(cfg.reference).items() if k != "method"}
    pyro.set_rng_seed(cfg.seed)
    return write_nuts_comparison(output_dir, model, guide, scored, data, options)


def _log_summary(metrics: Dict[str, Any], kl_weight: KLWeight) -> None:
    if not metrics["exact_elbo"]:
        log.warning("this run did not optimise the exact ELBO (%s): a tempered posterior",
                    kl_weight.describe(metrics["epochs"]))
    log.info("test: %s", ", ".join(f"{k} {v:.4f}" for k, v in metrics["test"].items()))


