"""The training experiment: ``python -m pyro_bnn.train [overrides]`` (or ``pyro-bnn-train``).

:func:`train` is a pure function of the config and an output directory; :func:`main`
is the thin ``@hydra.main`` wrapper. A run writes into its run dir:

* ``metrics.json``: final test metrics, final training terms, timings;
* ``history.csv``: one row per epoch (loss, nll, kl, kl.<layer>..., kl_weight, time_s);
* ``elbo_terms.png``: those terms over the epochs;
* ``posterior_health.png`` (mean-field guide): per site, the posterior sd against its initial scale, the
  signal-to-noise ratio and the share of weights fallen back to the prior (also in ``metrics.json``);
* ``reliability.png``, ``uncertainty_ood.png`` (classification), ``predictive.png`` (1-D regression),
  ``reference.json`` / ``reference.png`` (``reference=nuts``): see :mod:`pyro_bnn.report`;
* ``tensorboard/`` with ``tensorboard=true``: the same terms and metrics as TensorBoard scalars;
* ``posterior.pt``: the trained posterior, loadable with :func:`pyro_bnn.posterior.load_posterior`;
* ``.hydra/`` and ``train.log`` (Hydra's);
* ``checkpoint.pt`` while training (every epoch, and on SIGINT/SIGTERM), removed once finished;
* ``status.json`` only when the run failed or was interrupted: what happened.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List

import hydra
import pyro
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, register_configs, validate
from .data import load_data, load_ood, make_loader
from .empirical_bayes import prior_scales
from .evaluation import posterior_samples, score
from .guides import MeanFieldNormal
from .health import health_warnings, posterior_health
from .inference import KLWeight, TrainingInterrupted, fit
from .outputs import write_csv, write_json
from .plots import plot_elbo_terms, plot_posterior_health
from .progress import EpochReporter, require_tensorboard
from .report import write_figures, write_reference
from .posterior import CHECKPOINT, build, data_spec, load_checkpoint, save_checkpoint, save_posterior
from .summarize import STATUS_FILE

log = logging.getLogger(__name__)

#: Errors that name their cause and fix: reported in one line, without a traceback.
EXPECTED_ERRORS = (ConfigError, FileNotFoundError, FloatingPointError, ImportError, ValueError)


class RunInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after writing its checkpoint."""

    def __init__(self, signum: int, output_dir: Path, where: str):
        self.signum = signum
        super().__init__(
            f"{signal.Signals(signum).name} received: {where}; the checkpoint is in {output_dir / CHECKPOINT}. "
            f"Resume with the same overrides plus: resume=true hydra.run.dir={output_dir}"
        )


@contextmanager
def _signals_stop_training() -> Iterator[List[int]]:
    """Turn SIGINT/SIGTERM into a request to stop at the next step boundary (the list of received signals)."""
    received: List[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, lambda number, frame: received.append(number))
        except ValueError:  # not the main thread: the launcher handles signals
            pass
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _check_writable(output_dir: Path, key: str = "hydra.run.dir (or hydra.sweep.dir)") -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"the output dir {output_dir} cannot be written ({err.strerror}): "
                          f"set {key} to a writable place") from None


def _resume_state(cfg: DictConfig, output_dir: Path) -> Dict[str, Any]:
    path = output_dir / CHECKPOINT
    if not path.is_file():
        finished = (output_dir / "metrics.json").is_file()
        raise ConfigError(
            f"resume=true but {output_dir} has no {CHECKPOINT}"
            + (": that run finished (metrics.json is there)" if finished else
               ": pass hydra.run.dir=<the run dir of the interrupted run>")
        )
    saved = load_checkpoint(path)
    now = OmegaConf.to_container(cfg, resolve=True)
    diff = sorted(set(_flat(saved["config"]).items()) ^ set(_flat(now).items()))
    keys = sorted({k for k, _ in diff if k != "resume"})
    if keys:
        raise ConfigError(f"resume=true but the config differs from the checkpoint's at {', '.join(keys)}: "
                          "resume with the overrides of the interrupted run")
    return saved["training"]


def _flat(tree, prefix: str = "") -> Dict[str, Any]:
    if isinstance(tree, dict):
        out: Dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: str(tree)}


def train(cfg: DictConfig, output_dir, progress: bool = False) -> Dict[str, Any]:
    """Train the posterior that ``cfg`` describes; write the run files into ``output_dir``.

    The training state goes to ``checkpoint.pt`` after every epoch and on SIGINT/SIGTERM (then
    :class:`RunInterrupted` is raised); ``cfg.resume`` continues from it to the same result as an
    uninterrupted run. The checkpoint is removed once the run has finished.

    :param bool progress: show a tqdm bar over the epochs (when ``cfg.progress`` and stderr is a terminal).
    :return: the content of ``metrics.json`` (plain numbers).
    """
    validate(cfg)
    output_dir = Path(output_dir)
    _check_writable(output_dir)
    state = _resume_state(cfg, output_dir) if cfg.resume else None
    if cfg.tensorboard:
        require_tensorboard()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pyro.clear_param_store()
    pyro.set_rng_seed(cfg.seed)
    data = load_data(cfg.data.name, cfg.data.root, cfg.data.download, cfg.data.split_seed,
                     cfg.data.holdout_classes, cfg.data.subset)
    ood = load_ood(data, cfg.data.ood, cfg.data.root, cfg.data.download)
    spec = data_spec(data)
    model, guide = build(cfg, spec, cfg.device)
    kl_weight = KLWeight(cfg.inference.kl_weight, cfg.inference.kl_warmup_epochs, cfg.inference.kl_schedule)
    log.info("data=%s (%d train, %d test%s), model=%s, prior=%r, guide=%s, elbo=%s",
             data.name, len(data.train), len(data.test), f", OOD {cfg.data.ood} {len(ood)}" if ood is not None else "",
             cfg.model.name, model.prior, cfg.guide.name, cfg.inference.elbo)
    start = time.perf_counter()
    reporter = EpochReporter(cfg.inference.epochs, progress=progress and cfg.progress,
                             tensorboard_dir=output_dir / "tensorboard" if cfg.tensorboard else None)
    with reporter, _signals_stop_training() as received:
        try:
            history = fit(
                model, guide, make_loader(data.train, cfg.data.batch_size, shuffle=True, seed=cfg.seed),
                epochs=cfg.inference.epochs, lr=cfg.inference.lr, elbo=cfg.inference.elbo,
                num_particles=cfg.inference.num_particles, kl_weight=kl_weight,
                lr_schedule=cfg.inference.lr_schedule, estimator=cfg.inference.estimator,
                fused=cfg.inference.fused, state=state,
                on_checkpoint=lambda training: save_checkpoint(output_dir / CHECKPOINT, training, cfg, spec),
                should_stop=lambda: bool(received), callback=reporter,
            )
        except TrainingInterrupted as stop:
            raise RunInterrupted(received[0], output_dir, str(stop)) from None
        fit_s = time.perf_counter() - start
        write_csv(output_dir / "history.csv", history)
        exact = kl_weight.is_exact_elbo
        title = f"{data.name}, {cfg.model.name}, {cfg.guide.name}, elbo={cfg.inference.elbo}" + (
            "" if exact else f"\n(tempered, not the exact ELBO: kl_weight={cfg.inference.kl_weight}, "
                             f"warm-up {cfg.inference.kl_warmup_epochs} epochs)")
        plot_elbo_terms(history, output_dir / "elbo_terms.png", title=title)
        save_posterior(output_dir / "posterior.pt", model, guide, cfg, spec)
        pyro.set_rng_seed(cfg.seed)
        test_loader = make_loader(data.test, cfg.data.test_batch_size)
        samples = posterior_samples(model, guide, test_loader, cfg.eval.num_samples)
        test, raw = score(model, samples, test_loader,
                          make_loader(ood, cfg.data.test_batch_size) if ood is not None else None)
        extra = write_figures(output_dir, model, samples, raw, test, data, cfg.data.ood, title)
        health = _posterior_health(cfg, model, guide, output_dir, title)
        reporter.add_metrics(test, cfg.inference.epochs)
    last = history[-1]
    learned_scales = prior_scales(model)
    metrics = {
        "test": test,
        "train": {"loss": last["loss"], "nll": last["nll"], "kl": last["kl"],
                  "kl_layers": {k[3:]: v for k, v in last.items() if k.startswith("kl.")},
                  "num_data": data.num_train, "loss_per_example": last["loss"] / data.num_train},
        **({"uncertainty": extra} if extra else {}),
        **({"posterior_health": health} if health else {}),
        **({"prior_scales": learned_scales} if learned_scales else {}),
        "exact_elbo": exact,
        "kl_weight": cfg.inference.kl_weight,
        "time_s": time.perf_counter() - start,
        "fit_time_s": fit_s,
        "epochs": cfg.inference.epochs,
        "seed": cfg.seed,
    }
    if cfg.reference.method == "nuts":
        options = {k: v for k, v in OmegaConf.to_container(cfg.reference).items() if k != "method"}
        pyro.set_rng_seed(cfg.seed)
        comparison = write_reference(output_dir, model, guide, samples, raw["outputs"], test, data, test_loader,
                                     options)
        metrics["reference"] = {"nuts_test": comparison["nuts"], "nuts_seconds": comparison["nuts_diagnostics"]["seconds"]}
    write_json(output_dir / "metrics.json", metrics)
    (output_dir / CHECKPOINT).unlink(missing_ok=True)
    if not exact:
        log.warning("this run did not optimise the exact ELBO (kl_weight=%s, kl_warmup_epochs=%s): a tempered "
                    "posterior", cfg.inference.kl_weight, cfg.inference.kl_warmup_epochs)
    log.info("test: %s", ", ".join(f"{k} {v:.4f}" for k, v in test.items()))
    return metrics


def _posterior_health(cfg: DictConfig, model, guide, output_dir: Path, title: str) -> Dict[str, Any]:
    """Per-site posterior health of a mean-field run (``posterior_health.png``, warnings in the log); {} otherwise."""
    if not isinstance(guide, MeanFieldNormal):
        return {}
    health = posterior_health(model, guide, cfg.guide.init_scale)
    plot_posterior_health(health, output_dir / "posterior_health.png", title=f"{title}: posterior health")
    for warning in health_warnings(health):
        log.warning("posterior health: %s", warning)
    return health


class OutputDirCheck(Callback):
    """Hydra callback: refuse an output dir that cannot be created, in one line, before Hydra writes there."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(directory: str, key: str) -> None:
        try:
            _check_writable(Path(directory), key)
        except ConfigError as err:
            sys.exit(f"error: {err}")


register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig):
    """Run :func:`train`; return its metrics, or the ``objective`` metric (a float, for sweepers such as Optuna)."""
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        metrics = train(cfg, output_dir, progress=hydra_cfg.mode == RunMode.RUN)
        if cfg.objective:
            section, name = cfg.objective.split(".")
            return float(metrics[section][name])
        return metrics
    except RunInterrupted as stop:
        log.warning("%s", stop)
        write_json(output_dir / STATUS_FILE, {"status": "interrupted", "error": str(stop)})
        print(f"interrupted: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except Exception as err:
        log.error("%s", err, exc_info=not isinstance(err, EXPECTED_ERRORS))
        write_json(output_dir / STATUS_FILE, {"status": "failed", "error": f"{type(err).__name__}: {err}"})
        if hydra_cfg.mode == RunMode.MULTIRUN or not isinstance(err, EXPECTED_ERRORS):
            raise  # Hydra marks the job failed; the other jobs of a sweep go on
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
