"""Time of one training step: a plain PyTorch network against its Bayesian versions, in one process.

Batch 128 of random MNIST-shaped inputs; the MLP 784-400-400-10 and the CNN 32c5-64c5-256-10 (padding 2,
2x2 max-pool after each conv). Systems, timed interleaved (each repeat runs every system once, in turn):

* ``plain``: the network, cross-entropy, one torch Adam;
* ``pyro_bnn ...``: :func:`pyro_bnn.to_bayesian` of the same network, N(0, 1) prior, :func:`pyro_bnn.auto_normal`,
  one step of :func:`pyro_bnn.fit`'s loop (its :func:`~pyro_bnn.inference.training_objective` and optimizer):
  ``mean_field`` (closed-form KL, the fused step), ``mf local_reparam`` / ``mf flipout`` (its estimators),
  ``trace`` (Monte Carlo KL, fused), ``mf fused=False`` (Pyro's traces of guide and model);
* ``pyro SVI``: Pyro alone, as its tutorials write it: PyroSample priors, Pyro's AutoNormal,
  ``SVI(Trace_ELBO)``, ``pyro.optim.Adam``, Pyro's default validation, the data plate subsampled by Pyro;
* ``bayesian-torch`` Reparameterization and Flipout layers, when that package is installed.

Prints the median step time of each system and its ratio to the plain step (medians of the same run), and
writes ``benchmarks/results/<date>-step_time[-cuda].txt`` with the machine description.

    python benchmarks/step_time.py [--repeats 7] [--steps 20] [--threads 2] [--models mlp cnn] [--device cuda]
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
from pyro_bnn.inference import initialize_guide, optimizer, training_objective

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


def pyro_bnn_step(net: nn.Module, x, y, elbo: str, estimator: str = "shared", fused="auto") -> Callable[[], None]:
    model = to_bayesian(net, in_shape=x.shape[1:], prior=NormalPrior(1.0), num_data=NUM_DATA).to(x.device)
    guide = auto_normal(model, init_scale=1e-3)
    initialize_guide(guide, x, y)
    objective = training_objective(model, guide, elbo, estimator, fused=fused)
    adam = optimizer(objective.parameters, lr=1e-3)

    def step():  # the body of pyro_bnn.fit's loop (validation off, as there), without the bookkeeping
        with pyro.validation_enabled(False):
            terms = objective.terms(x, y)
            adam.zero_grad(set_to_none=True)
            (terms.nll + terms.kl).backward()
            adam.step()

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


def bayesian_torch_step(net: nn.Module, x, y, kind: str) -> Callable[[], None]:
    from bayesian_torch.models.dnn_to_bnn import dnn_to_bnn, get_kl_loss

    dnn_to_bnn(net, {"prior_mu": 0.0, "prior_sigma": 1.0, "posterior_mu_init": 0.0, "posterior_rho_init": -3.0,
                     "type": kind, "moped_enable": False})
    net.to(x.device)
    adam = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step():
        adam.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), y) + get_kl_loss(net) / NUM_DATA
        loss.backward()
        adam.step()

    return step


def systems(build: Callable[[], nn.Module], x, y) -> Dict[str, Callable[[], None]]:
    """Every system's step function, on ``x``'s device."""
    out = {"plain": plain_step(build().to(x.device), x, y),
           "pyro_bnn mean_field": pyro_bnn_step(build(), x, y, "mean_field"),
           "pyro_bnn mf local_reparam": pyro_bnn_step(build(), x, y, "mean_field", "local_reparameterization"),
           "pyro_bnn mf flipout": pyro_bnn_step(build(), x, y, "mean_field", "flipout"),
           "pyro_bnn trace": pyro_bnn_step(build(), x, y, "trace"),
           "pyro_bnn mf fused=False": pyro_bnn_step(build(), x, y, "mean_field", fused=False),
           "pyro SVI Trace_ELBO": pyro_svi_step(build().to(x.device), x, y)}
    try:
        out["bayesian-torch reparam"] = bayesian_torch_step(build(), x, y, "Reparameterization")
        out["bayesian-torch flipout"] = bayesian_torch_step(build(), x, y, "Flipout")
    except ImportError:
        pass
    return out


def measure(steps: Dict[str, Callable[[], None]], repeats: int, per_repeat: int, sync: Callable[[], None]
            ) -> Dict[str, float]:
    """Median over ``repeats`` of the mean time of ``per_repeat`` steps, systems interleaved."""
    times = {name: [] for name in steps}
    for step in steps.values():  # warm-up
        for _ in range(3):
            step()
    for _ in range(repeats):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            for _ in range(per_repeat):
                step()
            sync()
            times[name].append((time.perf_counter() - start) / per_repeat)
    return {name: statistics.median(t) for name, t in times.items()}


def machine(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}"
    return f"{platform.processor() or platform.machine()}, {threads} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per repeat")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    pyro.set_rng_seed(0)
    x, y = torch.randn(BATCH, 1, 28, 28, device=device), torch.randint(0, 10, (BATCH,), device=device)
    lines = [f"# {datetime.date.today()} {machine(device, args.threads)}, torch {torch.__version__}, "
             f"pyro {pyro.__version__}",
             f"# python benchmarks/step_time.py --repeats {args.repeats} --steps {args.steps} --threads {args.threads}"
             f" --device {args.device}",
             f"{'model':5} {'system':26} {'median ms':>10} {'x plain':>8}"]
    print("\n".join(lines), flush=True)
    for name in args.models:
        medians = measure(systems({"mlp": mlp, "cnn": cnn}[name], x, y), args.repeats,
                          args.steps if name == "mlp" or device.type == "cuda" else max(1, args.steps // 5), sync)
        for system, seconds in medians.items():
            lines.append(f"{name:5} {system:26} {seconds * 1e3:10.2f} {seconds / medians['plain']:8.2f}")
            print(lines[-1], flush=True)
    suffix = "" if device.type == "cpu" else f"-{device.type}"
    out = Path(__file__).parent / "results" / f"{datetime.date.today()}-step_time{suffix}.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
