"""The training experiment: ``python -m pyro_bnn.train [overrides]`` (or ``pyro-bnn-train``).

The experiment itself, :func:`~pyro_bnn.app.experiment.train`, is a pure function of the config and an output
directory; this module is the entry point around it (:func:`main`, the ``@hydra.main`` task, ``--help``), which
imports the library only when a run starts: ``--help``, ``--cfg job`` and a config Hydra refuses answer without
importing torch. A run writes into its run dir:

* ``metrics.json``: final test metrics, final training terms, timings;
* ``history.csv``: one row per epoch (loss, nll, kl, kl.<layer>..., kl_weight, time_s);
* ``elbo_terms.png``: those terms over the epochs;
* ``posterior_health.png`` (mean-field guide): per site, the posterior sd against its initial scale, the
  signal-to-noise ratio and the share of weights fallen back to the prior (also in ``metrics.json``);
* ``reliability.png``, ``uncertainty_ood.png`` (classification), ``predictive.png`` (1-D regression),
  ``reference.json`` / ``reference.png`` (``reference=nuts``): see :mod:`pyro_bnn.report`;
* ``tensorboard/`` with ``tensorboard=true``: the same terms and metrics as TensorBoard scalars;
* ``posterior.pt``: the trained posterior, loadable with :func:`pyro_bnn.app.build.posterior_from_file`
  (or :func:`pyro_bnn.load_posterior` into a model and guide built in code);
* ``.hydra/`` and ``train.log`` (Hydra's);
* ``checkpoint.pt`` while training (every epoch, and on SIGINT/SIGTERM), removed once finished;
* ``status.json`` only when the run failed or was interrupted: what happened.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from pathlib import Path
from typing import List

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .config import check_values, objective_value, override_keys
from .run_dir import RunDirRefused, RunInterrupted, finished_job, sweep_job_stage, write_status
from .schema import CONF_DIR, ConfigError, option_key_overrides, register_configs

log = logging.getLogger(__name__)

#: Errors that name their cause and fix: reported in one line, without a traceback.
EXPECTED_ERRORS = (ConfigError, FileNotFoundError, FloatingPointError, ImportError, ValueError)


def __getattr__(name: str):
    """:func:`~pyro_bnn.app.experiment.train`, imported when asked for (the entry point starts without the library)."""
    if name == "train":
        from .experiment import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _train_app(cfg: DictConfig):
    """Run :func:`train`; return its metrics, or the ``objective`` metric (a float, for sweepers such as Optuna)."""
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        given = override_keys(hydra_cfg.overrides.task)
        check_values(cfg, given)  # a bad value is refused before the library (torch) is imported
        stage = sweep_job_stage(output_dir) if cfg.resume and hydra_cfg.mode == RunMode.MULTIRUN else "resume"
        if stage == "finished":
            return objective_value(cfg, finished_job(output_dir))
        from .experiment import train

        sweep_dir = Path(hydra_cfg.runtime.cwd) / hydra_cfg.sweep.dir if hydra_cfg.mode == RunMode.MULTIRUN else None
        return objective_value(cfg, train(cfg, output_dir, progress=hydra_cfg.mode == RunMode.RUN, given=given,
                                          again=stage == "again", sweep_dir=sweep_dir))
    except RunInterrupted as stop:
        log.warning("%s", stop)
        write_status(output_dir, "interrupted", str(stop))
        print(f"interrupted: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except KeyboardInterrupt:  # Ctrl-C before training started (once training runs, it is a RunInterrupted)
        reason = "SIGINT before training started: there is no checkpoint; run it again"
        log.warning("%s", reason)
        write_status(output_dir, "interrupted", reason)
        print(f"interrupted: {reason}", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        log.error("%s", err, exc_info=not isinstance(err, EXPECTED_ERRORS))
        if not isinstance(err, RunDirRefused):  # the run in that dir is not this command's: its status stays
            write_status(output_dir, "failed", f"{type(err).__name__}: {err}")
        if hydra_cfg.mode == RunMode.MULTIRUN or not isinstance(err, EXPECTED_ERRORS):
            raise  # Hydra marks the job failed; the other jobs of a sweep go on
        sys.exit(f"error: {err}")


def main():
    """``python -m pyro_bnn.train [overrides]``; under ``torchrun --nproc_per_node=K`` one run on K processes."""
    sys.argv[1:] = option_key_overrides(sys.argv[1:])
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(app_help([a for a in sys.argv[1:] if a not in ("--help", "-h")]))
        return None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _join_process_group(sys.argv)
    try:
        result = _train_app()
        _leave_together()
        return result
    except KeyboardInterrupt:  # Ctrl-C in a sweep's launcher (its jobs write their own status.json)
        from .callbacks import MlflowSweep, OutputDirCheck
        from .summarize import summarize

        MlflowSweep.end_open("KILLED")
        sweep = OutputDirCheck.sweep_dir
        if sweep is None:
            raise
        summarize(sweep)
        sys.exit(f"interrupted: the sweep in {sweep} stopped; what each job did: {sweep / 'summary.md'}; finish it with "
                 f"the same command plus resume=true hydra.sweep.dir={sweep} (or one job: resume=true "
                 "hydra.run.dir=<its dir>, its overrides too)")
    except BaseException:  # a sweep that stops with a failed job (Hydra raises it after the last job)
        from .callbacks import MlflowSweep

        MlflowSweep.end_open("FAILED")
        raise
    finally:
        dist = sys.modules.get("torch.distributed")  # imported only by a run that trains
        if dist is not None and dist.is_initialized():  # each rank leaves the process group before it exits
            dist.destroy_process_group()


def _leave_together() -> None:
    """A data-parallel run's ranks wait for each other before leaving the process group: a rank that destroyed its
    gloo group while another still wrote its files could abort at exit (seen once in CI, rank 1's SIGABRT)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_initialized():
        dist.barrier()


def app_help(overrides: List[str]) -> str:
    """``--help``: the config groups and their options, and the config these ``overrides`` compose (what Hydra's
    help shows, without its listing of every group of Hydra's own, which takes a second and a half)."""
    from hydra import compose, initialize_config_dir

    groups = sorted(p for p in CONF_DIR.iterdir() if p.is_dir())
    lines = ["python -m pyro_bnn.train [group=option ...] [key=value ...]   (-m: a sweep; --hydra-help: Hydra's flags)",
             "", "== Configuration groups ==", "Compose your configuration from those groups (group=option)", ""]
    lines += [f"{g.name}: {', '.join(sorted(p.stem for p in g.glob('*.yaml')))}" for g in groups]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    lines += ["", "", "== Config ==", "Override anything in the config (foo.bar=value)", "", OmegaConf.to_yaml(cfg)]
    return "\n".join(lines)


def _join_process_group(argv: List[str]) -> None:
    """Under torchrun: join the process group, agree on the run dir (rank 0's time), keep ranks > 0 quiet."""
    import torch
    import torch.distributed as dist

    if "-m" in argv or "--multirun" in argv:
        sys.exit("error: torchrun runs one training run on several processes; a sweep (-m) takes a launcher "
                 "(launcher=local_parallel or slurm) instead")
    cuda = any(a.startswith("device=cuda") for a in argv) and torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    if not any(a.startswith("hydra.run.dir=") for a in argv):
        stamp = [datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S.%f")]
        dist.broadcast_object_list(stamp, src=0)
        argv.append(f"hydra.run.dir=outputs/{stamp[0]}")
    if dist.get_rank() > 0:
        argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled"]  # the config stays the same


if __name__ == "__main__":
    main()
