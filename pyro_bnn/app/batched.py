"""A multirun's jobs trained as one batch of models: the work of ``launcher=batched``.

Jobs whose composed configs differ only in :data:`BATCHABLE_KEYS` form a group; a group's jobs are trained in this
process as one batch of models (:mod:`pyro_bnn.training.replicates`): one network pass, one backward pass and one
Adam step for all of them, each job with its own data split, seed (its initial weights, its noise, its minibatch
order), prior scale, KL weight and initial posterior scale. Every job still gets its own run dir with the files of a
job run alone (``.hydra/``, ``train.log``, ``history.csv``, ``posterior.pt``, the figures, ``metrics.json``), and its
test metrics are scored from its own seed as ``evaluate`` scores them.

Three passes, each job in its own Hydra job context (:func:`hydra.core.utils.run_job`: its dir, its ``.hydra/``, its
``train.log``): prepare (validate, claim the dir, load the data, build the model and guide, plan the schedule), train
the group together, then write each job's results. The other keys cannot differ inside one optimizer step: the
learning rate and batch size (one Adam step over one minibatch per job), the epochs or steps (one loop), the network,
likelihood and prior family (one computation), the data set (one input shape). A group that cannot be batched
(:func:`unbatchable_reason`) runs one job at a time with Hydra's task function, with one line saying why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from .callbacks import SweepSummary
from .config import override_keys
from .summarize import summarize

log = logging.getLogger(__name__)

#: The keys whose values may differ between the jobs of one batch.
BATCHABLE_KEYS = ("data.split", "seed", "prior.scale", "inference.kl_weight", "guide.init_scale")
#: The options whose objects a batch trains (a plain MLP, its mean-field guide, a Normal prior).
BATCHED_TARGETS = {"model": "pyro_bnn.model.networks.BayesianMLP", "guide": "pyro_bnn.guides.auto_normal",
                   "prior": "pyro_bnn.model.priors.NormalPrior"}


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

    for group, target in BATCHED_TARGETS.items():
        if cfg[group].get("_target_") != target:
            return f"{group}={cfg[group].get('_target_')}: a batch trains {target}"
    inference = cfg.inference
    checks = [
        (cfg.model.get("bayesian", "all") != "all", "model.bayesian: a batch trains fully Bayesian networks"),
        (inference.estimator not in REPLICATE_ESTIMATORS,
         f"inference.estimator={inference.estimator}: a batch draws its noise with {list(REPLICATE_ESTIMATORS)}"),
        (inference.num_particles != 1, "inference.num_particles > 1: a batch draws one particle a step"),
        (inference.fused is False, "inference.fused=false: Pyro's traces train one job at a time"),
        (cfg.resume, "resume=true: a batch starts from the beginning"),
        (cfg.reference.method != "none", "reference: NUTS runs one job at a time"),
        (cfg.tensorboard, "tensorboard=true: a batch writes no TensorBoard scalars"),
    ]
    return next((reason for failed, reason in checks if failed), None)


@dataclass
class PreparedJob:
    """A job ready to train: its config, run dir, data, model, guide, plan and environment (:func:`prepare_job`)."""

    cfg: DictConfig
    output_dir: Path
    data: Any
    ood: Any
    model: Any
    guide: Any
    plan: Any
    environment: Dict[str, Any]


def launch_batched(hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig,
                   job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
    """Run the jobs of ``job_overrides`` (Hydra's launcher call): each group of batchable jobs as one batch, the
    others one at a time with ``task_function``; one :class:`~hydra.core.utils.JobReturn` per job, in their order."""
    configs = []
    for index, overrides in enumerate(job_overrides):
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = sweep_config.hydra.job.num = initial_job_idx + index
        configs.append(sweep_config)
    groups: Dict[str, List[int]] = {}
    for index, cfg in enumerate(configs):
        groups.setdefault(group_key(cfg), []).append(index)
    returns: Dict[int, JobReturn] = {}
    SweepSummary.after_each_job = False  # rebuilt after each group here: a batch's jobs end together
    try:
        for members in groups.values():
            _run_members(hydra_context, task_function, configs, members, job_overrides, initial_job_idx, returns)
            summarize(Path(config.hydra.sweep.dir))
    finally:
        SweepSummary.after_each_job = True
    return [returns[index] for index in range(len(configs))]


def _run_members(hydra_context: HydraContext, task_function: TaskFunction, configs: List[DictConfig],
                 members: List[int], job_overrides: Sequence[Sequence[str]], initial_job_idx: int,
                 returns: Dict[int, JobReturn]) -> None:
    """The jobs ``members`` of one group: one batch, or one at a time where they cannot be batched."""
    jobs = [initial_job_idx + index for index in members]
    reason = unbatchable_reason(configs[members[0]]) or ("a group of one job" if len(members) == 1 else None)
    if reason is not None:
        log.info("jobs %s: one at a time (%s)", jobs, reason)
        for index in members:
            returns[index] = _run(hydra_context, task_function, configs[index])
        return
    log.info("jobs %s: trained as one batch of %d models (%s)", jobs, len(members),
             ", ".join(" ".join(filter_overrides(job_overrides[index])) for index in members))
    returns.update(_run_group(hydra_context, [configs[index] for index in members], members))


def _run(hydra_context: HydraContext, task: Callable[[DictConfig], Any], cfg: DictConfig) -> JobReturn:
    """``task`` as the job of ``cfg`` (its dir, its ``.hydra/``, its log), then the launcher's logging back."""
    ret = run_job(hydra_context=hydra_context, task_function=task, config=cfg, job_dir_key="hydra.sweep.dir",
                  job_subdir_key="hydra.sweep.subdir")
    configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
    return ret


def _run_group(hydra_context: HydraContext, configs: List[DictConfig], members: List[int]) -> Dict[int, JobReturn]:
    """Prepare each job, train the prepared ones as one batch, write each one's results."""
    returns, prepared, config_of = {}, {}, dict(zip(members, configs))
    for index, cfg in config_of.items():
        ret = _run(hydra_context, _reported(prepare_job), cfg)
        if ret.status == JobStatus.COMPLETED:
            prepared[index] = ret.return_value
        else:
            returns[index] = ret
    if not prepared:
        return returns
    jobs = list(prepared.values())
    try:
        histories, fit_s = train_batch(jobs)
    except KeyboardInterrupt:  # every job of the batch says what happened
        from .run_dir import write_status

        for job in jobs:
            write_status(job.output_dir, "interrupted", "SIGINT while its batch trained: a batch has no checkpoint; "
                                                        "run the sweep again")
        raise
    except Exception as err:  # each job of the batch fails with the batch's error, in its own log and status.json
        for index in prepared:
            returns[index] = _run(hydra_context, _reported(partial(_raise, err)), config_of[index])
        return returns
    for (index, job), history in zip(prepared.items(), histories):
        returns[index] = _run(hydra_context, _reported(lambda _, job=job, history=history: finish_job(
            job, history, fit_s / len(jobs))), config_of[index])
    return returns


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


def prepare_job(cfg: DictConfig) -> PreparedJob:
    """Everything a job does before training: validate, claim the run dir, set the seed, load the data, build the
    model and guide (the guide run once on the first minibatch), plan the schedule."""
    from ..batch_checks import first_batch
    from ..data.loaders import make_loader
    from ..guides import initialize_guide
    from .config import validate
    from .experiment import _build, _load_data, _plan, _start, logged_environment
    from .run_dir import claim_run_dir

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    validate(cfg, override_keys(hydra_cfg.overrides.task))
    claim_run_dir(output_dir)
    _start(cfg, output_dir)
    data, ood = _load_data(cfg)
    model, guide = _build(cfg, data, ood)
    plan = _plan(cfg, data)
    environment = logged_environment(cfg)
    # the guide's starting means drawn as a run alone draws them: after its loader's first pass began (a DataLoader
    # draws a seed from torch's stream), from the job's own seed
    initialize_guide(guide, *first_batch(make_loader(data.train, plan.schedule.batch_size, shuffle=True, seed=cfg.seed)))
    return PreparedJob(cfg, output_dir, data, ood, model, guide, plan, environment)


def train_batch(jobs: List[PreparedJob]):
    """Train the prepared jobs as one batch: each one's history, and the batch's training time."""
    from ..objectives.elbo import ELBO_KL
    from ..training.replicates import Replicates, StackedBatches, fit_replicates
    from ..training.schedules import Schedule

    first = jobs[0]
    schedule = first.plan.schedule
    inference = first.cfg.inference
    replicates = Replicates([(job.model, job.guide) for job in jobs], kl=ELBO_KL[inference.elbo],
                            estimator=inference.estimator)
    start = time.perf_counter()
    seeds = [job.cfg.seed for job in jobs]
    batches = StackedBatches([job.data.train for job in jobs], schedule.batch_size, seeds)
    histories = fit_replicates(replicates, batches,
                               Schedule(schedule.epochs, schedule.lr, inference.lr_schedule),
                               [job.plan.kl_weight for job in jobs], seeds)
    fit_s = time.perf_counter() - start
    log.info("batch of %d models trained: %d epochs in %.1f s", len(jobs), schedule.epochs, fit_s)
    return histories, fit_s


def finish_job(job: PreparedJob, history: List[Dict[str, float]], fit_s: float):
    """Everything a job does after training, as a job run alone does it: the epochs' log lines, the run files, the
    scored test predictive, ``metrics.json``; returns the metrics (or the ``objective`` metric, for sweepers)."""
    from .config import objective_value
    from .experiment import _write_results, record_run
    from .progress import EpochReporter
    from .run_record import RunRecord

    start = time.perf_counter()
    cfg, output_dir = job.cfg, job.output_dir
    with EpochReporter(job.plan.schedule.epochs) as reporter:
        for record in history:
            reporter(record)
    scored, health = _write_results(cfg, job.model, job.guide, job.data, job.ood, history, output_dir, job.plan.title)
    run = RunRecord(history, job.data, job.model, scored, health, job.plan.kl_weight, job.environment,
                    job.plan.schedule, fit_s, time_s=fit_s + time.perf_counter() - start)
    return objective_value(cfg, record_run(cfg, run, None, output_dir, how="trained in a batch"))
