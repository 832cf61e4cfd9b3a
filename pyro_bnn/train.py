"""The training experiment: ``python -m pyro_bnn.train [overrides]`` (or ``pyro-bnn-train``).

:func:`train` is a pure function of the config and an output directory; :func:`main`
is the thin ``@hydra.main`` wrapper. A run writes into its run dir:

* ``metrics.json``: final test metrics, final training terms, timings;
* ``history.csv``: one row per epoch (loss, nll, kl, kl.<layer>..., kl_weight, time_s);
* ``elbo_terms.png``: those terms over the epochs;
* ``posterior.pt``: the trained posterior, loadable with :func:`pyro_bnn.posterior.load_posterior`;
* ``.hydra/`` and ``train.log`` (Hydra's);
* ``status.json`` only when the run failed: the error.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict

import hydra
import pyro
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .config import ConfigError, register_configs, validate
from .data import load_data, make_loader
from .evaluation import evaluate
from .inference import KLWeight, fit
from .outputs import write_csv, write_json
from .plots import plot_elbo_terms
from .posterior import build, data_spec, save_posterior
from .summarize import STATUS_FILE

log = logging.getLogger(__name__)


def train(cfg: DictConfig, output_dir) -> Dict[str, Any]:
    """Train the posterior that ``cfg`` describes; write the run files into ``output_dir``.

    :return: the content of ``metrics.json`` (plain numbers).
    """
    validate(cfg)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pyro.clear_param_store()
    pyro.set_rng_seed(cfg.seed)
    data = load_data(cfg.data.name, cfg.data.root, cfg.data.download, cfg.data.split_seed)
    spec = data_spec(data)
    model, guide = build(cfg, spec, cfg.device)
    kl_weight = KLWeight(cfg.inference.kl_weight, cfg.inference.kl_warmup_epochs, cfg.inference.kl_schedule)
    log.info("data=%s (%d train, %d test), model=%s, prior=%r, guide=%s, elbo=%s",
             data.name, len(data.train), len(data.test), cfg.model.name, model.prior, cfg.guide.name,
             cfg.inference.elbo)
    start = time.perf_counter()
    history = fit(
        model, guide, make_loader(data.train, cfg.data.batch_size, shuffle=True, seed=cfg.seed),
        epochs=cfg.inference.epochs, lr=cfg.inference.lr, elbo=cfg.inference.elbo,
        num_particles=cfg.inference.num_particles, kl_weight=kl_weight, lr_schedule=cfg.inference.lr_schedule,
        callback=lambda r: log.info("epoch %d: loss %.1f nll %.1f kl %.1f", r["epoch"], r["loss"], r["nll"], r["kl"]),
    )
    fit_s = time.perf_counter() - start
    write_csv(output_dir / "history.csv", history)
    exact = kl_weight.is_exact_elbo
    plot_elbo_terms(history, output_dir / "elbo_terms.png",
                    title=f"{data.name}, {cfg.model.name}, {cfg.guide.name}, elbo={cfg.inference.elbo}"
                    + ("" if exact else f" (not the exact ELBO: kl_weight={cfg.inference.kl_weight}, "
                                        f"warm-up {cfg.inference.kl_warmup_epochs} epochs)"))
    save_posterior(output_dir / "posterior.pt", model, guide, cfg, spec)
    pyro.set_rng_seed(cfg.seed)
    test = evaluate(model, guide, make_loader(data.test, cfg.data.test_batch_size), cfg.eval.num_samples)
    last = history[-1]
    metrics = {
        "test": test,
        "train": {"loss": last["loss"], "nll": last["nll"], "kl": last["kl"],
                  "kl_layers": {k[3:]: v for k, v in last.items() if k.startswith("kl.")},
                  "num_data": data.num_train, "loss_per_example": last["loss"] / data.num_train},
        "exact_elbo": exact,
        "time_s": time.perf_counter() - start,
        "fit_time_s": fit_s,
        "epochs": cfg.inference.epochs,
        "seed": cfg.seed,
    }
    write_json(output_dir / "metrics.json", metrics)
    if not exact:
        log.warning("this run did not optimise the exact ELBO (kl_weight=%s, kl_warmup_epochs=%s)",
                    cfg.inference.kl_weight, cfg.inference.kl_warmup_epochs)
    log.info("test: %s", ", ".join(f"{k} {v:.4f}" for k, v in test.items()))
    return metrics


register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> Dict[str, Any]:
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        return train(cfg, output_dir)
    except Exception as err:
        log.error("%s", err, exc_info=not isinstance(err, (ConfigError, FileNotFoundError)))
        write_json(output_dir / STATUS_FILE, {"status": "failed", "error": f"{type(err).__name__}: {err}"})
        if hydra_cfg.mode == RunMode.MULTIRUN or not isinstance(err, (ConfigError, FileNotFoundError)):
            raise  # Hydra marks the job failed; the other jobs of a sweep go on
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
