"""How a BNN's loss is made, in numbers: ``python -m pyro_bnn.app.explain [--run-dir DIR]`` (``pyro-bnn-explain``).

Without ``--run-dir`` it trains a small Bayesian CNN (one conv layer, one dense
hidden layer) on scikit-learn's digits with a fixed seed; with it, it explains
the saved posterior of that run on its training data. It prints:

* the KL of every site (conv kernels and dense matrices alike) in closed form, the
  same KL summed from the per-weight formula, and a Monte Carlo estimate
  (``log q(w) - log p(w)`` at ``S`` sampled weights) with its standard error;
* the expected NLL, the KL and -ELBO in whole-data units and per example
  (``mean NLL + KL / N``, TensorFlow Probability's form);
* the posterior's health per site (:mod:`pyro_bnn.evaluation.health`): how far its sd moved from the initial
  scale, its signal-to-noise ratio, the share of weights fallen back to the prior, and warnings.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pyro
import torch
from omegaconf import OmegaConf
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from ..data.loaders import make_loader
from ..data.registry import load_data
from ..evaluation.health import format_health, posterior_health
from ..guides import MeanFieldNormal, auto_normal, is_mean_field
from ..model.networks import BayesianCNN
from ..model.priors import NormalPrior
from ..objectives.elbo import elbo_particle
from ..objectives.empirical_bayes import EmpiricalBayes
from ..objectives.normal_kl import normal_kl
from ..training.loop import fit
from ..training.schedules import Schedule
from .build import load_run_data, option_name, posterior_from_file, training_schedule


@dataclass
class SiteKL:
    """The KL of one weight or bias tensor, three ways."""

    site: str
    layer_type: str
    shape: tuple
    closed_form: float
    formula: float  # pyro_bnn.objectives.normal_kl.normal_kl summed over the weights
    monte_carlo: float
    mc_stderr: float

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class Breakdown:
    sites: List[SiteKL]
    nll: float  # expected NLL of the whole data set
    nll_stderr: float
    num_data: int
    mc_samples: int
    #: a learned prior's hyperprior term (-log InvGamma of the learned variances; 0 without one): part of the loss
    hyperprior: float = 0.0

    @property
    def kl(self) -> float:
        return sum(s.closed_form for s in self.sites)

    @property
    def kl_mc(self) -> float:
        return sum(s.monte_carlo for s in self.sites)

    @property
    def kl_mc_stderr(self) -> float:
        return math.sqrt(sum(s.mc_stderr**2 for s in self.sites))  # sites are drawn independently


def kl_breakdown(model, guide: MeanFieldNormal, x: torch.Tensor, y: torch.Tensor, mc_samples: int = 1000,
                 nll_samples: int = 100) -> Breakdown:
    """Per-site KL (closed form, per-weight formula, Monte Carlo) and the expected NLL on ``(x, y)``.

    ``(x, y)`` should be the whole training set: the NLL is then the data set's expected NLL.
    """
    if not is_mean_field(guide):
        raise TypeError("kl_breakdown needs a mean-field Normal guide (pyro_bnn.auto_normal)")
    with torch.no_grad():
        model_trace = poutine.trace(model).get_trace(x, y)
        sites = []
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
                continue
            loc, scale = guide.loc_and_scale(name)
            prior = site["fn"]
            q = torch.distributions.Normal(loc, scale)
            p = prior.base_dist
            closed = float(torch.distributions.kl_divergence(q, p).sum())
            formula = float(normal_kl(loc, scale, p.loc, p.scale).sum())
            w = q.sample((mc_samples,))
            draws = (q.log_prob(w) - p.log_prob(w)).flatten(1).sum(1).double()
            layer_type = type(model.get_submodule(name.rpartition(".")[0])).__name__.removeprefix("Pyro")
            sites.append(SiteKL(name, layer_type, tuple(loc.shape), closed, formula,
                                float(draws.mean()), float(draws.std() / math.sqrt(mc_samples))))
        nlls = torch.stack([elbo_particle(model, guide, x, y).nll for _ in range(nll_samples)]).double()
    learned = EmpiricalBayes.of(model)
    variances = torch.tensor([s ** 2 for s in learned.scales().values()]) if learned is not None else None
    hyperprior = float(learned.hyperprior_nll(variances.to(learned.sizes.device))) if learned is not None else 0.0
    return Breakdown(sites, float(nlls.mean()), float(nlls.std() / math.sqrt(nll_samples)), model.num_data,
                     mc_samples, hyperprior)


def format_breakdown(b: Breakdown, batch_size: int) -> str:
    """The tables ``python -m pyro_bnn.app.explain`` prints (``batch_size``: the training's minibatch size)."""
    n = b.num_data
    lines = [f"KL(q || p) per site (nats; Monte Carlo with S={b.mc_samples} weight draws, +- one standard error)",
             f"{'site':14} {'layer':7} {'shape':>14} {'scalars':>8} {'closed form':>12} {'sum of formula':>15} "
             f"{'Monte Carlo':>20}"]
    for s in b.sites:
        lines.append(f"{s.site:14} {s.layer_type:7} {str(s.shape):>14} {s.numel:8d} {s.closed_form:12.2f} "
                     f"{s.formula:15.2f} {s.monte_carlo:12.2f} +- {s.mc_stderr:5.2f}")
    lines.append(f"{'total':14} {'':7} {'':>14} {sum(s.numel for s in b.sites):8d} {b.kl:12.2f} "
                 f"{sum(s.formula for s in b.sites):15.2f} {b.kl_mc:12.2f} +- {b.kl_mc_stderr:5.2f}")
    m = n / batch_size
    lines += [
        "",
        f"The loss in two units (N = {n} training examples; NLL averaged over weight draws, "
        f"+- {b.nll_stderr:.2f} whole-data):",
        f"{'':22} {'whole data set':>15} {'per example (/N)':>17}",
        f"{'expected NLL':22} {b.nll:15.2f} {b.nll / n:17.4f}",
        f"{'KL':22} {b.kl:15.2f} {b.kl / n:17.4f}",
        *([f"{'hyperprior':22} {b.hyperprior:15.2f} {b.hyperprior / n:17.4f}"] if b.hyperprior else []),
        f"{'-ELBO = NLL + KL' + (' + hyperprior' if b.hyperprior else ''):22} {b.nll + b.kl + b.hyperprior:15.2f} "
        f"{(b.nll + b.kl + b.hyperprior) / n:17.4f}",
        "",
        "TensorFlow Probability's `loss = nll + sum(model.losses) / num_examples` is the per-example column:",
        f"  sum(model.losses) = the KL of every layer summed = {b.kl:.2f} (one term per Bayesian layer; "
        "TFP's default bias has no prior, so no KL);",
        f"  / num_examples    = KL / N = {b.kl / n:.4f}, added to the mean NLL {b.nll / n:.4f}.",
        f"  Dividing by a batch size of {batch_size} instead gives {b.kl / batch_size:.4f}: "
        f"M = N/B = {m:.2f} times the ELBO's KL weight.",
    ]
    if any(s.layer_type.startswith("Conv") for s in b.sites):
        lines.append("A conv kernel's KL is the same per-scalar Normal-Normal formula summed over its "
                     "C_out*C_in*k*k weights: the 'closed form' and 'sum of formula' columns agree for Conv2d and "
                     "Linear alike.")
    return "\n".join(lines)


#: The minibatch size of the small CNN of the docs.
SMALL_CNN_BATCH = 64


def explain_small_cnn(epochs: int = 20, seed: int = 0, mc_samples: int = 1000) -> Tuple[Breakdown, Dict]:
    """Train the small digits CNN of the docs (seeded); break its loss down, and its posterior's health."""
    pyro.set_rng_seed(seed)
    data = load_data("digits")
    model = BayesianCNN(data.in_shape, 10, channels=(8,), hidden=(32,), prior=NormalPrior(1.0),
                        num_data=data.num_train)
    guide = auto_normal(model, init_scale=1e-3)
    fit(model, guide, make_loader(data.train, SMALL_CNN_BATCH, shuffle=True, seed=seed), Schedule(epochs=epochs, lr=1e-2))
    return kl_breakdown(model, guide, *data.train.tensors, mc_samples=mc_samples), posterior_health(model, guide, 1e-3)


def explain_run(run_dir, seed: int = 0, mc_samples: int = 1000) -> Tuple[Breakdown, Dict, int]:
    """Break down the loss of the posterior saved in ``run_dir`` on the data it was trained on (its held-out
    classes removed, its subset), and its health; with the run's batch size."""
    model, guide, cfg, spec = posterior_from_file(Path(run_dir) / "posterior.pt")
    if not is_mean_field(guide):
        raise ValueError(f"{run_dir} was trained with guide={option_name(cfg.guide)}: explain breaks down the KL of a "
                         "mean-field Normal guide (guide=auto_normal)")
    data = load_run_data(OmegaConf.merge(cfg.data, {"download": False}))
    pyro.set_rng_seed(seed)
    breakdown = kl_breakdown(model, guide, *data.train.tensors, mc_samples=mc_samples)
    batch_size = training_schedule(cfg.inference, data.num_train, cfg.data.batch_size).batch_size  # the size rule's
    return breakdown, posterior_health(model, guide, cfg.guide.init_scale), batch_size


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pyro_bnn.app.explain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", help="explain this saved run instead of training the small CNN")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the small CNN (default 20)")
    parser.add_argument("--mc-samples", type=int, default=1000, help="weight draws of the Monte Carlo KL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the same numbers on every machine with this torch)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.mc_samples < 2 or args.threads < 1:
        parser.error("--epochs and --threads must be >= 1 and --mc-samples >= 2")
    torch.set_num_threads(args.threads)
    if args.run_dir:
        try:
            breakdown, health, batch_size = explain_run(args.run_dir, args.seed, args.mc_samples)
        except (FileNotFoundError, ValueError) as err:
            parser.exit(2, f"error: {err}\n")
        print(f"Run {args.run_dir}, on its training data.")
    else:
        breakdown, health = explain_small_cnn(args.epochs, args.seed, args.mc_samples)
        batch_size = SMALL_CNN_BATCH
        print(f"Small Bayesian CNN (conv 8x3x3, dense 32) on digits, N(0, 1) prior, mean-field Normal guide, "
              f"{args.epochs} epochs, seed {args.seed}.")
    print(format_breakdown(breakdown, batch_size))
    print()
    print(format_health(health))


if __name__ == "__main__":
    main()
