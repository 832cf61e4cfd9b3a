"""Time of one training step: a plain PyTorch network against its Bayesian versions, in one process.

Batch 128 (``--batch``) of random inputs: MNIST-shaped for the MLP 784-400-400-10 and the CNN 32c5-64c5-256-10
(padding 2, 2x2 max-pool after each conv), CIFAR-shaped for torchvision's ResNet-18 (``resnet18``, 10 classes,
its BatchNorm layers point estimates in every Bayesian version), digits-shaped (1x8x8) for the app's default
CNN (``digits_cnn``: 24c3-48c3-64-10, GELU; time it at ``--batch 32``, the default recipe's). Systems, timed
interleaved (each repeat runs every system once, in turn):

* ``plain``: the network, cross-entropy, one torch Adam;
* ``pyro_bnn ...``: :func:`pyro_bnn.to_bayesian` of the same network, N(0, 1) prior, :func:`pyro_bnn.auto_normal`,
  one step of :func:`pyro_bnn.fit`'s loop (its :class:`~pyro_bnn.SVIStep`: the objective and optimizer):
  ``mean_field`` (closed-form KL, the fused step), ``mf local_reparam`` / ``mf dense_lrt`` (local
  reparameterization in the dense layers only, the default recipe's) / ``mf flipout`` (its estimators),
  ``trace`` (Monte Carlo KL, fused), ``mf fused=False`` (Pyro's traces of guide and model), ``mf last layer``
  (``bayesian="last"``: only the last Linear layer Bayesian, the rest point estimates) and ``mf layer4+fc``
  (``bayesian=["layer4", "fc"]``, ResNet-18 only);
* ``pyro SVI``: Pyro alone, as its tutorials write it: PyroSample priors, Pyro's AutoNormal,
  ``SVI(Trace_ELBO)``, ``pyro.optim.Adam``, Pyro's default validation, the data plate subsampled by Pyro;
* ``bayesian-torch`` Reparameterization and Flipout layers, when that package is installed.

Prints the median step time of each system and its ratio to the plain step (medians of the same run), and
writes ``benchmarks/results/<date>-step_time[-cuda].txt`` with the machine description.

With ``--memory`` it measures instead the peak memory of each system's steps, each in a fresh process: the
peak resident set (CPU; ``ru_maxrss`` after 5 steps minus the process's before building the system) or
``torch.cuda.max_memory_allocated`` (GPU), beside the floor of its parameters, gradients and Adam state
(``4 x`` the network's parameters for the plain network; a mean-field BNN holds means and scales: ``8 x``).
Writes ``benchmarks/results/<date>-step_memory[-cuda].txt``.

    python benchmarks/step_time.py [--repeats 7] [--steps 20] [--threads 2] [--models mlp cnn resnet18]
                                   [--batch 128] [--device cuda] [--memory]
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
from common import cnn, mlp
from pyro.infer import SVI, Trace_ELBO
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroModule, PyroSample
from pyro.nn.module import to_pyro_module_
from torch import nn

from pyro_bnn import MeanFieldELBO, NormalPrior, Schedule, SVIStep, auto_normal, cnn_network, to_bayesian
from pyro_bnn.objectives.elbo import ELBO_KL

BATCH, NUM_DATA = 128, 60000


def resnet18() -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(num_classes=10)


def digits_cnn() -> nn.Module:
    return cnn_network((1, 8, 8), 10, channels=(24, 48), hidden=(64,), activation="gelu")


MODELS = {"mlp": (mlp, (1, 28, 28)), "cnn": (cnn, (1, 28, 28)), "resnet18": (resnet18, (3, 32, 32)),
          "digits_cnn": (digits_cnn, (1, 8, 8))}


def plain_step(net: nn.Module, x, y) -> Callable[[], None]:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()

    return step


def pyro_bnn_step(net: nn.Module, x, y, elbo: str, estimator: str = "shared", fused="auto", bayesian="all"
                  ) -> Callable[[], None]:
    model = to_bayesian(net, in_shape=x.shape[1:], prior=NormalPrior(1.0), num_data=NUM_DATA,
                        bayesian=bayesian).to(x.device)
    guide = auto_normal(model, init_scale=1e-3)
    svi = SVIStep(MeanFieldELBO(kl=ELBO_KL[elbo], estimator=estimator, fused=fused), Schedule(epochs=1, lr=1e-3))
    state = svi.init(model, guide, [(x, y)], num_steps=1)

    def step():  # the body of pyro_bnn.fit's loop (validation off, as there), without the bookkeeping
        with pyro.validation_enabled(False):
            svi.update(state, x, y, 1.0)

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


#: Each system's step builder: ``(network builder, x, y) -> step``.
SYSTEMS = {
    "plain": lambda build, x, y: plain_step(build().to(x.device), x, y),
    "pyro_bnn mean_field": lambda build, x, y: pyro_bnn_step(build(), x, y, "mean_field"),
    "pyro_bnn mf local_reparam": lambda build, x, y: pyro_bnn_step(build(), x, y, "mean_field",
                                                                   "local_reparameterization"),
    "pyro_bnn mf dense_lrt": lambda build, x, y: pyro_bnn_step(build(), x, y, "mean_field",
                                                               "dense_local_reparameterization"),
    "pyro_bnn mf flipout": lambda build, x, y: pyro_bnn_step(build(), x, y, "mean_field", "flipout"),
    "pyro_bnn trace": lambda build, x, y: pyro_bnn_step(build(), x, y, "trace"),
    "pyro_bnn mf last layer": lambda build, x, y: pyro_bnn_step(build(), x, y, "mean_field", bayesian="last"),
    "pyro_bnn mf layer4+fc": lambda build, x, y: pyro_bnn_step(build(), x, y, "mean_field",
                                                               bayesian=["layer4", "fc"]),
    "pyro_bnn mf fused=False": lambda build, x, y: pyro_bnn_step(build(), x, y, "mean_field", fused=False),
    "pyro SVI Trace_ELBO": lambda build, x, y: pyro_svi_step(build().to(x.device), x, y),
    "bayesian-torch reparam": lambda build, x, y: bayesian_torch_step(build(), x, y, "Reparameterization"),
    "bayesian-torch flipout": lambda build, x, y: bayesian_torch_step(build(), x, y, "Flipout"),
}


def systems(build: Callable[[], nn.Module], x, y, names=None) -> Dict[str, Callable[[], None]]:
    """Every system's step function (or those in ``names``), on ``x``'s device; bayesian-torch where installed."""
    out = {}
    for name, make in SYSTEMS.items():
        if names is None or name in names:
            try:
                step = make(build, x, y)
                step()  # a system that cannot train this network is left out, saying why
                out[name] = step
            except ImportError:  # bayesian-torch is not installed
                pass
            except Exception as err:  # noqa: BLE001 (e.g. Pyro's SVI on a network with BatchNorm parameters)
                print(f"# {name}: left out ({type(err).__name__}: {str(err).splitlines()[0][:100]})", flush=True)
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


def batch(model: str, size: int, device) -> tuple:
    pyro.set_rng_seed(0)
    shape = MODELS[model][1]
    return torch.randn(size, *shape, device=device), torch.randint(0, 10, (size,), device=device)


def peak_memory(model: str, system: str, size: int, device: torch.device) -> Dict[str, float]:
    """Peak memory of 5 steps of ``system`` (bytes above the process's before it was built), and its floor."""
    import resource

    x, y = batch(model, size, device)
    build = MODELS[model][0]
    num_parameters = sum(p.numel() for p in build().parameters())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step = systems(build, x, y, [system])[system]
    for _ in range(5):
        step()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    floor = (4 if system == "plain" else 8) * 4 * num_parameters  # fp32 parameters, gradients, Adam's two moments
    return {"peak": peak, "floor": floor}


def memory_table(args, device) -> list:
    import json
    import subprocess
    import sys

    lines = [f"{'model':8} {'system':26} {'peak MiB':>9} {'x plain':>8} {'floor MiB':>10} {'peak/floor':>10}"]
    print("\n".join(lines), flush=True)
    for model in args.models:
        rows = {}
        for system in SYSTEMS:
            code = (f"import json, torch, step_time as s; torch.set_num_threads({args.threads}); "
                    f"print(json.dumps(s.peak_memory({model!r}, {system!r}, {args.batch}, torch.device({args.device!r}))))")
            proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True, text=True)
            if proc.returncode == 0:
                rows[system] = json.loads(proc.stdout.strip().splitlines()[-1])
        for system, r in rows.items():
            lines.append(f"{model:8} {system:26} {r['peak'] / 2**20:9.1f} {r['peak'] / rows['plain']['peak']:8.2f} "
                         f"{r['floor'] / 2**20:10.1f} {r['peak'] / r['floor']:10.2f}")
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per repeat")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--memory", action="store_true", help="peak memory instead of step time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    lines = [f"# {datetime.date.today()} {machine(device, args.threads)}, torch {torch.__version__}, "
             f"pyro {pyro.__version__}",
             f"# python benchmarks/step_time.py --repeats {args.repeats} --steps {args.steps} --threads {args.threads}"
             f" --models {' '.join(args.models)} --batch {args.batch} --device {args.device}"
             + (" --memory" if args.memory else "")]
    print("\n".join(lines), flush=True)
    if args.memory:
        lines += memory_table(args, device)
    else:
        lines.append(f"{'model':8} {'system':26} {'median ms':>10} {'x plain':>8}")
        print(lines[-1], flush=True)
        for name in args.models:
            x, y = batch(name, args.batch, device)
            per_repeat = args.steps if name == "mlp" or device.type == "cuda" else max(1, args.steps // 5)
            medians = measure(systems(MODELS[name][0], x, y), args.repeats, per_repeat, sync)
            for system, seconds in medians.items():
                lines.append(f"{name:8} {system:26} {seconds * 1e3:10.2f} {seconds / medians['plain']:8.2f}")
                print(lines[-1], flush=True)
    suffix = "" if device.type == "cpu" else f"-{device.type}"
    kind = "step_memory" if args.memory else "step_time"
    out = Path(__file__).parent / "results" / f"{datetime.date.today()}-{kind}{suffix}.txt"
    with out.open("a") as f:
        f.write("\n".join(lines) + "\n\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
