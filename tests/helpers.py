"""What several test modules share: small models and guides, exact answers, one subprocess runner, one
compose helper, the tiny run configs. Tests import from here, never from each other or from conftest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyro
import torch
from hydra import compose, initialize_config_dir
from pyro.poutine.messenger import Messenger

from pyro_bnn import BayesianMLP, NormalPrior, auto_normal, initialize_guide
from pyro_bnn.app.schema import CONF_DIR, option_key_overrides, register_configs
from pyro_bnn.model.priors import normal_params

ROOT = Path(__file__).resolve().parents[1]
#: Hydra's log lines above warnings are noise in a test's output.
QUIET = ["hydra.job_logging.root.level=WARNING"]
#: A run of a few seconds.
TINY = ["+experiment=debug", *QUIET]

register_configs()


def small_mlp(num_data=300, scale=1.0, hidden=(16,)):
    return BayesianMLP((1, 8, 8), 10, hidden=hidden, prior=NormalPrior(scale), num_data=num_data)


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.as_tensor(expected, dtype=torch.float64), rtol=rtol, atol=atol)


def spread_guide(model, x, y, init_scale=0.05, spread=1.0):
    """An initialised mean-field guide with distinct scales per weight, so nothing cancels by accident."""
    guide = auto_normal(model, init_scale=init_scale)
    initialize_guide(guide, x, y)
    with torch.no_grad():
        for p in guide.scales.parameters():
            p.add_(spread * torch.rand_like(p))
    return guide


def fused_noise(guide, seed):
    """The noise the fused mean-field step draws after ``pyro.set_rng_seed(seed)``: one standard Normal vector over
    the guide's sites in their order, ``{site: its flat part}`` (for :class:`FixedNoise`)."""
    locs = [guide.loc_and_scale(name)[0] for name, _ in guide.prototype_trace.iter_stochastic_nodes()]
    pyro.set_rng_seed(seed)
    flat = torch.randn(sum(loc.numel() for loc in locs), dtype=locs[0].dtype, device=locs[0].device)
    names = [name for name, _ in guide.prototype_trace.iter_stochastic_nodes()]
    return dict(zip(names, flat.split([loc.numel() for loc in locs])))


def guide_gradients(guide):
    """``{parameter name: a copy of its gradient}`` of ``guide``, then its gradients cleared."""
    grads = {name: p.grad.clone() for name, p in guide.named_parameters() if p.grad is not None}
    guide.zero_grad(set_to_none=True)
    return grads


def assert_same_gradients(ours, theirs):
    assert sorted(ours) == sorted(theirs)
    for name, grad in ours.items():
        torch.testing.assert_close(grad, theirs[name], rtol=1e-4, atol=1e-4 * float(theirs[name].abs().max()))


class FixedNoise(Messenger):
    """Makes a guide draw ``loc + scale * noise[site]`` at each Normal site: Pyro's own sampling, given noise.
    Sites whose value is already decided (the model's, replayed from the guide) are left alone."""

    def __init__(self, noise):
        super().__init__()
        self.noise = noise

    def _pyro_sample(self, msg):
        if msg["name"] in self.noise and not msg["done"]:
            loc, scale = normal_params(msg["fn"])
            msg["value"] = loc + scale * self.noise[msg["name"]].view(loc.shape)


#: Bayesian linear regression y = x w + b + noise: its noise sd and prior scale (conjugate: exact posterior).
SIGMA, PRIOR_SCALE = 0.3, 1.0


def exact_posterior(x, y):
    """Mean and precision of the exact posterior over ``(w, b)`` of Bayesian linear regression."""
    phi = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    precision = phi.T @ phi / SIGMA**2 + torch.eye(phi.shape[1], dtype=torch.float64) / PRIOR_SCALE**2
    mean = torch.linalg.solve(precision, phi.T @ y.double() / SIGMA**2)
    return mean, precision


def cli(module, *args, cwd=ROOT, check=True, timeout=600) -> subprocess.CompletedProcess:
    """``python -m module args`` in ``cwd``; with ``check``, a failure shows its output."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def last_line(proc) -> str:
    return proc.stderr.strip().splitlines()[-1]


def compose_train(*overrides, hydra_node=False):
    """The app's training config with ``overrides``, as ``python -m pyro_bnn.train`` composes it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=option_key_overrides(list(overrides)),
                       return_hydra_config=hydra_node)


def train_in_process(run_dir, *overrides):
    """:func:`pyro_bnn.app.train.train` on the composed config: a run without a subprocess (and without the
    ``.hydra/`` folder and ``train.log`` that Hydra's launcher adds)."""
    from pyro_bnn.app.config import override_keys
    from pyro_bnn.app.train import train

    return train(compose_train(*overrides), run_dir, given=override_keys(overrides))


def fake_job(sweep: Path, job: int, overrides, rmse, ll):
    """A finished job dir of a regression sweep: its overrides and a metrics.json with these test figures."""
    run = sweep / str(job)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    metrics = {"test": {"rmse": rmse, "log_likelihood": ll}, "train": {"nll": 1.0, "kl": 2.0}, "time_s": 3.0}
    (run / "metrics.json").write_text(json.dumps(metrics))


def write_uci(root: Path, name="toy", rows=60, splits=3, seed=0, constant_column=False) -> np.ndarray:
    """A data set in the benchmark's layout: 3 inputs and a target ``10 + 5 * (x0 - x1) + noise`` in column 3."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)) * [1.0, 2.0, 0.5] + [0.0, 3.0, -1.0]
    if constant_column:
        x[:, 2] = 7.0
    y = 10 + 5 * (x[:, 0] - x[:, 1]) + 0.5 * rng.normal(size=rows)
    table = np.column_stack([x[:, :2], x[:, 2], y])
    folder = root / name / "data"
    folder.mkdir(parents=True)
    np.savetxt(folder / "data.txt", table)
    np.savetxt(folder / "index_features.txt", [0, 1, 2], fmt="%d")
    np.savetxt(folder / "index_target.txt", [3], fmt="%d")
    (folder / "n_splits.txt").write_text(f"{splits}\n")
    (folder / "n_hidden.txt").write_text("8\n")
    for i in range(splits):
        order = np.random.default_rng(100 + i).permutation(rows)
        np.savetxt(folder / f"index_train_{i}.txt", order[: int(0.8 * rows)], fmt="%d")
        np.savetxt(folder / f"index_test_{i}.txt", order[int(0.8 * rows):], fmt="%d")
    return table
