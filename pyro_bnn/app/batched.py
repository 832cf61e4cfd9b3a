"""A multirun's jobs trained as one batch of models: the work of ``launcher=batched``.

Jobs whose composed configs differ only in :data:`BATCHABLE_KEYS` form a group; a group's jobs are trained in this
process as one batch of models (:mod:`pyro_bnn.training.replicates`): one network pass, one backward pass and one
Adam step for all of them, each job with its own data split, seed (its initial weights, its noise, its minibatch
order), prior scale, KL weight and initial posterior scale. Every job still gets its own run dir with the files of a
job run alone (``.hydra/``, ``train.log``, ``history.csv``, ``posterior.pt``, the figures, ``metrics.json``), and its
test metrics are scored from its own seed as ``evaluate`` scores them.

Three passes (:mod:`pyro_bnn.app.batch_jobs`), each job's in its own Hydra job context
(:func:`hydra.core.utils.run_job`: its dir, its ``.hydra/``, its ``train.log``): prepare (validate, claim the dir, load
the data, build the model and guide, plan the schedule), train the group together (each job's ``checkpoint.pt``
holding its part), then write each job's results; a job whose loss goes bad fails alone. In a sweep resumed with
``resume=true``, the jobs that had finished are left as they are, those with a checkpoint go on from it (together
where they stopped together), the others start again. The other keys cannot differ inside one optimizer step: the
learning rate and batch size (one Adam step over one minibatch per job), the epochs or steps (one loop), the network,
likelihood and prior family (one computation), the data set (one input shape); and once the data are loaded, the
jobs of a group whose training sets differ in size train in one batch per size (one schedule of steps). A group
that cannot be batched (:func:`unbatchable_reason`) runs one job at a time with Hydra's task function, with one line
saying why.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from .callbacks import SweepSummary, check_job, launcher_checks_jobs
from .config import objective_value, override_keys
from .summarize import summarize

log = logging.getLogger(__name__)

#: The keys whose values may differ between the jobs of one batch.
BATCHABLE_KEYS = ("data.split", "data.split_seed", "seed", "prior.scale", "inference.kl_weight",
                  "guide.init_scale")
#: The options whose objects a batch trains (a plain MLP or CNN, its mean-field guide, a Normal prior).
BATCHED_TARGETS = {"model": ("pyro_bnn.model.networks.BayesianMLP", "pyro_bnn.model.networks.BayesianCNN"),
                   "guide": ("pyro_bnn.guides.auto_normal",), "prior": ("pyro_bnn.model.priors.NormalPrior",)}


def group_key(cfg: DictConfig) -> str:
    """What a job's config says but for :data:`BATCHABLE_KEYS` (and Hydra's own node): jobs with one key batch."""
    task = OmegaConf.to_container(cfg, resolve=False)
    task.pop("hydra", None)
    for key in BATCHABLE_KEYS:
        node = task
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node.get(parent, {})
        node.pop(leaf, None)
    return OmegaConf.to_yaml(OmegaConf.create(task))


def unbatchable_reason(cfg: DictConfig) -> Optional[str]:
    """Why a job of ``cfg`` cannot train in a batch with others (None when it can)."""
    from ..training.replicates import REPLICATE_ESTIMATORS

    for group, targets in BATCHED_TARGETS.items():
        if cfg[group].get("_target_") not in targets:
            return f"{group}={cfg[group].get('_target_')}: a batch trains {' or '.join(targets)}"
    inference = cfg.inference
    checks = [
        (inference.estimator not in REPLICATE_ESTIMATORS,
         f"inference.estimator={inference.estimator}: a batch draws its noise with {list(REPLICATE_ESTIMATORS)}"),
        (inference.num_particles != 1, "inference.num_particles > 1: a batch draws one particle a step"),
        (inference.fused is False, "inference.fused=false: Pyro's traces train one job at a time"),
        (cfg.reference.method != "none", "reference: NUTS runs one job at a time"),
        (cfg.tensorboard, "tensorboard=true: a batch writes no TensorBoard scalars"),
    ]
    return next((reason for failed, reason in checks if failed), None)


def launch_batched(hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig,
                   job_overrides: Sequence[Sequence[str]], initial_job_idx: int, finishers: int = 0) -> List[JobReturn]:
    """Run the jobs of ``job_overrides`` (Hydra's launcher call): each group of batchable jobs as one batch, the
    others one at a time with ``task_function``; one :class:`~hydra.core.utils.JobReturn` per job, in their order.

    :param int finishers: processes that write a trained batch's jobs' results (0: one per core).
    """
    configs = []
    loader = hydra_context.config_loader
    kept = getattr(loader, "kept_compositions", None) or KeptCompositions(loader)  # none kept: each composed here
    for index, overrides in enumerate(job_overrides):
        sweep_config = kept.take(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = sweep_config.hydra.job.num = initial_job_idx + index
        configs.append(sweep_config)
    if launcher_checks_jobs(config):  # every job's config, before the first job runs
        for index, (overrides, cfg) in enumerate(zip(job_overrides, configs)):
            check_job(initial_job_idx + index, overrides,
                      lambda cfg=cfg: OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"]))
    groups: Dict[str, List[int]] = {}
    for index, cfg in enumerate(configs):
        groups.setdefault(group_key(cfg), []).append(index)
    returns: Dict[int, JobReturn] = {}
    SweepSummary.after_each_job = False  # rebuilt after each group here: a batch's jobs end together
    try:
        for members in groups.values():
            _run_members(hydra_context, task_function, configs, members, job_overrides, initial_job_idx, returns,
                         finishers or os.cpu_count() or 1)
            summarize(Path(config.hydra.sweep.dir))
    finally:
        SweepSummary.after_each_job = True
    return [returns[index] for index in range(len(configs))]


class KeptCompositions:
    """The job configs Hydra's config loader composes, kept until the launcher takes them: the basic sweeper composes
    every job of a batch once to check it, and the launcher takes those (:meth:`take`) instead of composing them again
    (a tenth of a second a job). Each composition is taken once, in the order it was made: a sweep that lists one job
    twice gets two configs, one per job (each job's own ``hydra.job.num``, so its own run dir)."""

    def __init__(self, loader) -> None:
        self.compose = loader.load_sweep_config
        self.kept: Dict[Tuple[int, Tuple[str, ...]], List[DictConfig]] = {}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: List[str]) -> DictConfig:
        """Compose a job's config, as the loader does, and keep it for the launcher."""
        composed = self.compose(master_config, sweep_overrides)
        self.kept.setdefault((id(master_config), tuple(sweep_overrides)), []).append(composed)
        return composed

    def take(self, master_config: DictConfig, sweep_overrides: List[str]) -> DictConfig:
        """The oldest kept composition of this job, or a new one where none is kept."""
        queue = self.kept.get((id(master_config), tuple(sweep_overrides)))
        return queue.pop(0) if queue else self.compose(master_config, sweep_overrides)


def remember_compositions(loader) -> KeptCompositions:
    """Make Hydra's config ``loader`` keep each job config it composes until the launcher takes it
    (:class:`KeptCompositions`, ``loader.kept_compositions``)."""
    kept = KeptCompositions(loader)
    loader.load_sweep_config = kept.load_sweep_config
    loader.kept_compositions = kept
    return kept


def _run_members(hydra_context: HydraContext, task_function: TaskFunction, configs: List[DictConfig],
                 members: List[int], job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
                 returns: Dict[int, JobReturn], finishers: int) -> None:
    """The jobs ``members`` of one group: one batch, or one at a time where they cannot be batched; in a resumed
    sweep, the jobs that had finished are left as they are (the task returns their metrics)."""
    if configs[members[0]].resume:
        from .run_dir import sweep_job_stage

        finished = [index for index in members if sweep_job_stage(_job_dir(configs[index])) == "finished"]
        if finished:
            log.info("jobs %s: finished earlier, left as they are", [initial_job_idx + index for index in finished])
        for index in finished:
            returns[index] = _run(hydra_context, task_function, configs[index])
        members = [index for index in members if index not in finished]
        if not members:
            return
    jobs = [initial_job_idx + index for index in members]
    reason = unbatchable_reason(configs[members[0]]) or ("a group of one job" if len(members) == 1 else None)
    if reason is not None:
        log.info("jobs %s: one at a time (%s)", jobs, reason)
        for index in members:
            returns[index] = _run(hydra_context, task_function, configs[index])
        return
    log.info("jobs %s: trained as one batch of %d models (%s)", jobs, len(members),
             ", ".join(" ".join(filter_overrides(job_overrides[index])) for index in members))
    returns.update(_run_group(hydra_context, [configs[index] for index in members], members, finishers))


def _job_dir(cfg: DictConfig) -> Path:
    return Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir)


def _run(hydra_context: HydraContext, task: Callable[[DictConfig], Any], cfg: DictConfig) -> JobReturn:
    """``task`` as the job of ``cfg`` (its dir, its ``.hydra/``, its log), then the launcher's logging back."""
    ret = run_job(hydra_context=hydra_context, task_function=task, config=cfg, job_dir_key="hydra.sweep.dir",
                  job_subdir_key="hydra.sweep.subdir")
    configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
    return ret


def _run_group(hydra_context: HydraContext, configs: List[DictConfig], members: List[int],
               finishers: int) -> Dict[int, JobReturn]:
    """Prepare each job, train the prepared ones as one batch (those resumed: from their checkpoints, together where
    they stopped at one position), write each one's results (in ``finishers`` processes); a job whose loss went bad
    fails alone."""
    from .batch_jobs import BatchInterrupted, finish_job, train_batch

    returns, prepared, config_of = {}, {}, dict(zip(members, configs))
    for index, cfg in config_of.items():
        ret = _run(hydra_context, _reported(_prepare), cfg)
        if ret.status == JobStatus.COMPLETED:
            prepared[index] = ret.return_value
        else:
            returns[index] = ret
    if not prepared:
        return returns
    jobs = list(prepared.values())
    try:
        outcomes, fit_s = train_batch(jobs)
    except (BatchInterrupted, KeyboardInterrupt) as stop:  # every job of the batch says what happened
        from .run_dir import write_status

        where = stop.where if isinstance(stop, BatchInterrupted) else "SIGINT while its batch started"
        sweep = Path(configs[0].hydra.sweep.dir)
        for job in jobs:
            write_status(job.output_dir, "interrupted", f"{where}; finish the sweep with its command plus resume=true "
                                                        f"hydra.sweep.dir={sweep}")
            if job.tracker is not None:
                job.tracker.fail(stop, interrupted=True)
        raise KeyboardInterrupt from None
    except Exception as err:  # each job of the batch fails with the batch's error, in its own log and status.json
        outcomes, fit_s = [err] * len(jobs), [0.0] * len(jobs)
    tasks = []
    for (index, job), outcome, seconds in zip(prepared.items(), outcomes, fit_s):
        if isinstance(outcome, Exception) and job.tracker is not None:
            job.tracker.fail(outcome)
        step = partial(_raise, outcome) if isinstance(outcome, Exception) else (
            lambda cfg, job=job, history=outcome, seconds=seconds: objective_value(cfg, finish_job(job, history, seconds)))
        tasks.append((index, partial(_run, hydra_context, _reported(step), config_of[index])))
    returns.update(in_processes(tasks, finishers))
    return returns


def in_processes(tasks: List[Tuple[int, Callable[[], Any]]], processes: int) -> Dict[int, Any]:
    """``{key: task()}`` of ``tasks`` (``(key, task)`` pairs, in their order), shared among ``processes`` processes: this one and
    ``processes - 1`` forks of it (each on one thread), whose results come back pickled. A fork that fails to give
    its results back has its tasks run here; where the platform cannot fork, all run here."""
    import pickle

    import torch

    processes = min(processes, len(tasks)) if hasattr(os, "fork") else 1
    parts = [tasks[start::processes] for start in range(processes)]
    threads = torch.get_num_threads()
    if processes > 1:  # the forks and this process on a core each
        torch.set_num_threads(1)
    forks = []
    try:
        for part in parts[1:]:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the fork: its part, its results into the pipe, and out without running any exit handler
                os.close(read)
                code = 1
                torch.set_num_threads(1)
                try:
                    payload = pickle.dumps([(key, task()) for key, task in part])
                    code = 0
                except BaseException:  # noqa: BLE001 (the parent runs this part again)
                    payload = b""
                with os.fdopen(write, "wb") as pipe:
                    pipe.write(payload)
                os._exit(code)
            os.close(write)
            forks.append((pid, read, part))
        results = {key: task() for key, task in parts[0]}
        for pid, read, part in forks:
            with os.fdopen(read, "rb") as pipe:
                payload = pipe.read()
            os.waitpid(pid, 0)
            results.update(pickle.loads(payload) if payload else {key: task() for key, task in part})
        return {key: results[key] for key, _ in tasks}
    finally:
        torch.set_num_threads(threads)


def _prepare(cfg: DictConfig):
    """A batch job's task before training (:func:`~pyro_bnn.app.batch_jobs.prepare_job`), in its Hydra job context;
    a resumed sweep's job that left no checkpoint starts from the beginning."""
    from .batch_jobs import prepare_job
    from .run_dir import sweep_job_stage

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    again = bool(cfg.resume) and sweep_job_stage(output_dir) == "again"
    return prepare_job(cfg, output_dir, override_keys(hydra_cfg.overrides.task), again=again,
                       sweep_dir=Path(hydra_cfg.runtime.cwd) / hydra_cfg.sweep.dir)


def _raise(error: Exception, _: DictConfig):
    raise error


def _reported(step: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """``step`` as a job's task: a failure is logged in the job's ``train.log`` and its ``status.json`` says it."""

    def task(cfg: DictConfig):
        from .run_dir import write_status

        try:
            return step(cfg)
        except Exception as err:
            log.error("%s", err)
            write_status(Path(HydraConfig.get().runtime.output_dir), "failed", f"{type(err).__name__}: {err}")
            raise

    return task
