"""Time of one training step: a plain PyTorch network against its Bayesian versions, in one process.

Batch 128 of random MNIST-shaped inputs; the MLP 784-400-400-10 and the CNN 32c5-64c5-256-10 (padding 2,
2x2 max-pool after each conv). Systems, timed interleaved (each repeat runs every system once, in turn):

* ``plain``: the network, cross-entropy, one torch Adam;
* ``pyro_bnn mean_field`` / ``pyro_bnn trace``: :func:`pyro_bnn.to_bayesian` of the same network, N(0, 1) prior,
  :func:`pyro_bnn.auto_normal`, one step of :func:`pyro_bnn.fit`'s loop (closed-form / Monte Carlo KL);
* ``pyro SVI``: Pyro alone, as its tutorials write it: PyroSample priors, Pyro's AutoNormal,
  ``SVI(Trace_ELBO)``, ``pyro.optim.Adam``, Pyro's default validation, the data plate subsampled by Pyro;
* ``bayesian-torch`` Reparameterization layers, when that package is installed.

Prints the median step time of each system and its ratio to the plain step (medians of the same run), and
writes ``benchmarks/results/<date>-step_time.txt`` with the machine description.

    python benchmarks/step_time.py [--repeats 7] [--steps 20] [--threads 2] [--models mlp cnn]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroModule, PyroSample
from pyro.nn.module import to_pyro_module_
from torch import nn

from pyro_bnn import NormalPrior, auto_normal, to_bayesian
from pyro_bnn.elbo import ELBO_KL, elbo_terms
from pyro_bnn.inference import initialize_guide

BATCH, NUM_DATA = 128, 60000


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 10))


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 10))


def plain_step(net: nn.Module, x, y) -> Callable[[], None]:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()

    return step


def pyro_bnn_step(net: nn.Module, x, y, elbo: str) -> Callable[[], None]:
    model = to_bayesian(net, in_shape=(1, 28, 28), prior=NormalPrior(1.0), num_data=NUM_DATA)
    guide = auto_normal(model, init_scale=1e-3)
    initialize_guide(guide, x, y)
    optimizer = torch.optim.Adam([*guide.parameters(), *model.parameters()], lr=1e-3, foreach=True)

    def step():  # the body of pyro_bnn.fit's loop (validation off, as there), without the bookkeeping
        with pyro.validation_enabled(False):
            terms = elbo_terms(model, guide, x, y, kl=ELBO_KL[elbo])
        optimizer.zero_grad(set_to_none=True)
        (terms.nll + terms.kl).backward()
        optimizer.step()

    return step


class _PyroNet(PyroModule):
    def __init__(self, net: nn.Module):
        super().__init__()
        to_pyro_module_(net)
        for module in net.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                for name, param in list(module.named_parameters(recurse=False)):
                    setattr(module, name, PyroSample(dist.Normal(0.0, 1.0).expand(param.shape).to_event(param.dim())))
        self.net = net

    def forward(self, x, y=None):
        logits = self.net(x)
        with pyro.plate("data", NUM_DATA, subsample_size=len(x)):
            return pyro.sample("obs", dist.Categorical(logits=logits), obs=y)


def pyro_svi_step(net: nn.Module, x, y) -> Callable[[], None]:
    model = _PyroNet(net)
    svi = SVI(model, AutoNormal(model, init_scale=1e-3), pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    return lambda: svi.step(x, y)


def bayesian_torch_step(net: nn.Module, x, y) -> Callable[[], None]:
    from bayesian_torch.models.dnn_to_bnn import dnn_to_bnn, get_kl_loss

    dnn_to_bnn(net, {"prior_mu": 0.0, "prior_sigma": 1.0, "posterior_mu_init": 0.0, "posterior_rho_init": -3.0,
                     "type": "Reparameterization", "moped_enable": False})
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), y) + get_kl_loss(net) / NUM_DATA
        loss.backward()
        optimizer.step()

    return step


def systems(build: Callable[[], nn.Module], x, y) -> Dict[str, Callable[[], None]]:
    out = {"plain": plain_step(build(), x, y),
           "pyro_bnn mean_field": pyro_bnn_step(build(), x, y, "mean_field"),
           "pyro_bnn trace": pyro_bnn_step(build(), x, y, "trace"),
           "pyro SVI Trace_ELBO": pyro_svi_step(build(), x, y)}
    try:
        out["bayesian-torch reparam"] = bayesian_torch_step(build(), x, y)
    except ImportError:
        pass
    return out


def measure(steps: Dict[str, Callable[[], None]], repeats: int, per_repeat: int) -> Dict[str, float]:
    """Median over ``repeats`` of the mean time of ``per_repeat`` steps, systems interleaved."""
    times = {name: [] for name in steps}
    for step in steps.values():  # warm-up
        for _ in range(3):
            step()
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(per_repeat):
                step()
            times[name].append((time.perf_counter() - start) / per_repeat)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per repeat")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(0)
    x, y = torch.randn(BATCH, 1, 28, 28), torch.randint(0, 10, (BATCH,))
    lines = [f"# {datetime.date.today()} {platform.processor() or platform.machine()}, {args.threads} threads, "
             f"torch {torch.__version__}, pyro {pyro.__version__}",
             f"# python benchmarks/step_time.py --repeats {args.repeats} --steps {args.steps} --threads {args.threads}",
             f"{'model':5} {'system':24} {'median ms':>10} {'x plain':>8}"]
    print("\n".join(lines), flush=True)
    for name in args.models:
        medians = measure(systems({"mlp": mlp, "cnn": cnn}[name], x, y), args.repeats,
                          args.steps if name == "mlp" else max(1, args.steps // 5))
        for system, seconds in medians.items():
            lines.append(f"{name:5} {system:24} {seconds * 1e3:10.2f} {seconds / medians['plain']:8.2f}")
            print(lines[-1], flush=True)
    out = Path(__file__).parent / "results" / f"{datetime.date.today()}-step_time.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
