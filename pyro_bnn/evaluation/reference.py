"""A reference posterior: NUTS (``pyro.infer.MCMC``) on the very same Pyro model, for small problems.

Mean-field VI is an approximation; on a small problem Hamiltonian Monte Carlo
gives (nearly) exact posterior samples of the same model, so the two predictives
can be compared::

    samples, diagnostics = nuts_posterior(model, x_train, y_train, num_samples=200, warmup_steps=200)
    outputs, targets = predict_with_samples(model, samples, test_loader)

NUTS conditions on the whole training set at once, so the model's ``num_data`` must
be the number of examples passed (the plate then scales by 1). A learned Gaussian
noise scale is a point estimate (a parameter, not a sample site) and stays at the
value SVI learned.

Weight-space diagnostics (``n_eff``, ``r_hat``) of a neural network are poor by nature (hidden units
can swap and flip sign, so the posterior has many equivalent modes); they are reported, but the
comparison that matters is between the predictives.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, List, Optional, Tuple

import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_value
from torch import nn

log = logging.getLogger(__name__)


def nuts_posterior(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_samples: int = 200,
    warmup_steps: int = 200,
    num_chains: int = 1,
    max_tree_depth: int = 8,
    target_accept_prob: float = 0.8,
    init_values: Optional[Dict[str, torch.Tensor]] = None,
) -> Tuple[Dict[str, torch.Tensor], Dict[str, float]]:
    """Draw ``num_samples`` (per chain) posterior weight samples of ``model`` given all of ``(x, y)`` with NUTS.

    :param init_values: where the chains start (e.g. the SVI guide's medians); default: a prior draw.
    :return: ``(samples, diagnostics)``: ``{site: (num_chains * num_samples, *shape)}``, and a summary:
        ``min_n_eff``, ``max_r_hat`` over all weights, ``divergences``, ``seconds``.
    """
    if model.num_data != len(x):
        raise ValueError(f"NUTS conditions on all the training data at once: the model has num_data={model.num_data}"
                         f" but {len(x)} examples were given; pass the whole training set")
    options = dict(max_tree_depth=int(max_tree_depth), target_accept_prob=float(target_accept_prob))
    if init_values:
        options["init_strategy"] = init_to_value(values=init_values)
    kernel = NUTS(model, **options)
    start = time.perf_counter()
    mcmc = MCMC(kernel, num_samples=int(num_samples), warmup_steps=int(warmup_steps), num_chains=int(num_chains),
                disable_progbar=True, hook_fn=_progress(int(num_samples) + int(warmup_steps), start))
    mcmc.run(x, y)
    seconds = time.perf_counter() - start
    samples = {k: v.detach() for k, v in mcmc.get_samples().items()}
    stats = mcmc.diagnostics()
    n_eff = [float(d["n_eff"].min()) for k, d in stats.items() if k in samples]
    r_hat = [float(d["r_hat"].max()) for k, d in stats.items() if k in samples]
    divergences = sum(len(v) for v in stats.get("divergences", {}).values())
    diagnostics = {"min_n_eff": min(n_eff), "max_r_hat": max(r_hat), "divergences": divergences,
                   "seconds": seconds, "num_samples": int(num_samples) * int(num_chains)}
    diagnostics["warnings"] = nuts_warnings(diagnostics)
    for warning in diagnostics["warnings"]:
        log.warning("NUTS: %s", warning)
    return samples, diagnostics


#: Convergence thresholds: split R-hat above this, or fewer effective samples than this, is not to be trusted.
MAX_R_HAT = 1.05
MIN_N_EFF = 20


def nuts_warnings(diagnostics: Dict[str, float]) -> List[str]:
    """What in :func:`nuts_posterior`'s diagnostics says that the chains have not converged, and what to change."""
    warnings = []
    if diagnostics["max_r_hat"] > MAX_R_HAT:
        warnings.append(f"max r_hat {diagnostics['max_r_hat']:.2f} > {MAX_R_HAT}: the chains have not mixed, the "
                        "reference is not the posterior; raise reference.warmup_steps and reference.num_samples")
    if diagnostics["min_n_eff"] < MIN_N_EFF:
        warnings.append(f"min n_eff {diagnostics['min_n_eff']:.1f} < {MIN_N_EFF}: too few effective samples for "
                        "the reference's uncertainty; raise reference.num_samples (or reference.max_tree_depth)")
    if diagnostics["divergences"]:
        warnings.append(f"{diagnostics['divergences']} divergent transitions: raise reference.target_accept_prob")
    return warnings


def _progress(total: int, start: float):
    """An MCMC ``hook_fn`` logging each stage's progress about every tenth of the iterations (INFO)."""
    every = max(1, total // 10)

    def hook(kernel, params, stage, i):
        if (i + 1) % every == 0:
            log.info("NUTS %s: iteration %d (%.0f s)", stage.lower(), i + 1, time.perf_counter() - start)

    return hook


__all__ = ["nuts_posterior"]
