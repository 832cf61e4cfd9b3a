"""Re-evaluate a saved run: ``python -m pyro_bnn.app.evaluate run_dir=<run dir> [dataset=<name>]`` (``pyro-bnn-evaluate``).

Loads ``<run dir>/posterior.pt``, evaluates it on the test split of the run's own
data set (or of ``dataset``, e.g. an out-of-distribution set of the same input shape)
with the run's seed and number of predictive samples unless overridden, prints the
metrics and writes them to ``<run dir>/evaluation_<data>.json``. On the run's own data
(with its held-out classes and out-of-distribution set) and the defaults, it reproduces
``metrics.json``'s test metrics.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

import hydra
from omegaconf import DictConfig

from .schema import CONF_DIR, ConfigError, register_configs


def __getattr__(name: str):
    """:func:`~pyro_bnn.app.rescore.evaluate_run`, imported when asked for (the entry point starts without the
    library)."""
    if name == "evaluate_run":
        from .rescore import evaluate_run

        return evaluate_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def _evaluate_app(cfg: DictConfig) -> Dict:
    from .rescore import evaluate_run

    try:
        metrics = evaluate_run(cfg.run_dir, cfg.dataset, cfg.num_samples, cfg.seed, cfg.device)
    except (ConfigError, OSError, ValueError) as err:  # OSError: e.g. a run dir that cannot be written
        sys.exit(f"error: {err}")  # a refused command writes nothing, not even a log file
    except KeyboardInterrupt:
        sys.exit("interrupted: nothing was written (evaluate writes evaluation_<data>.json only once it has finished)")
    print(json.dumps(metrics, indent=2))
    return metrics


def check_run_dir_argument(argv: List[str]) -> Optional[str]:
    """Why the ``run_dir=`` of ``argv`` cannot be evaluated (None when it can): checked before Hydra starts, which
    would otherwise create the dir, or fail at its log file with a long traceback."""
    if any(a.startswith("-") for a in argv):  # --help, --cfg, ...: Hydra's own
        return None
    values = [a.split("=", 1)[1] for a in argv if a.startswith("run_dir=")]
    if not values:
        return "run_dir is missing: python -m pyro_bnn.app.evaluate run_dir=<the run dir of a training run>"
    run_dir = Path(values[-1])
    if not (run_dir / "posterior.pt").is_file():
        return f"no saved posterior at {run_dir / 'posterior.pt'}: pass run_dir=<the run dir of a training run>"
    if not os.access(run_dir, os.W_OK):
        return f"run_dir={run_dir} cannot be written (evaluate writes evaluation_<data>.json there): copy the run dir"
    return None


def main() -> None:
    """``python -m pyro_bnn.app.evaluate run_dir=...`` (``pyro-bnn-evaluate``)."""
    problem = check_run_dir_argument(sys.argv[1:])
    if problem:
        sys.exit(f"error: {problem}")
    _evaluate_app()


if __name__ == "__main__":
    main()
