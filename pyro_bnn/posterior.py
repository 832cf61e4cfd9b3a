"""Build a model/guide pair from a config, and save or load a trained posterior.

A saved posterior (``posterior.pt``) is a plain dict of tensors and primitives,
written with :func:`torch.save` and read with ``torch.load(weights_only=True)``
(loading never executes code)::

    {"format": "pyro_bnn.posterior/1", "config": {...}, "data": {...},
     "model_state": {...}, "guide_state": {...}}

Autoguides create their parameters on their first call, so :func:`load_posterior`
runs the fresh guide once on a dummy batch before loading its state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Tuple

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .data import DataSplits
from .guides import build_guide
from .inference import initialize_guide
from .likelihoods import Categorical, Gaussian
from .models import BayesianCNN, BayesianMLP, BayesianModel
from .priors import PRIOR_FAMILIES, NormalPrior, StudentTPrior

#: Version 2: the mean-field guide stores log(scale) (version 1 stored softplus^-1(scale)).
FORMAT = "pyro_bnn.posterior/2"
CHECKPOINT_FORMAT = "pyro_bnn.checkpoint/2"
#: File name of the training checkpoint in a run dir.
CHECKPOINT = "checkpoint.pt"


def data_spec(data: DataSplits) -> Dict[str, Any]:
    """What the model needs to know about the data, saved with the posterior."""
    return {"name": data.name, "in_shape": list(data.in_shape), "num_outputs": data.num_outputs,
            "task": data.task, "num_data": data.num_train}


def build_prior(cfg: DictConfig):
    cls = PRIOR_FAMILIES[cfg.family]
    options = dict(scale=cfg.scale, loc=cfg.loc, layer_scales=dict(cfg.layer_scales), fan_in=cfg.fan_in)
    if cls is StudentTPrior:
        options["df"] = cfg.df
    if cls is NormalPrior:
        options.update(learn_scale=cfg.get("learn_scale", False), hyperprior_alpha=cfg.get("hyperprior_alpha", 0.0))
    return cls(**options)


def build_model(cfg: DictConfig, spec: Dict[str, Any]) -> BayesianModel:
    """The Bayesian model of ``cfg.model`` and ``cfg.prior`` for data described by ``spec``."""
    likelihood = (Categorical() if spec["task"] == "classification"
                  else Gaussian(cfg.model.get("noise_scale", 1.0), learn_scale=cfg.model.get("learn_noise", True)))
    common = dict(activation=cfg.model.activation, prior=build_prior(cfg.prior), likelihood=likelihood,
                  num_data=spec["num_data"])
    if cfg.model.name == "mlp":
        return BayesianMLP(spec["in_shape"], spec["num_outputs"], hidden=list(cfg.model.hidden), **common)
    if len(spec["in_shape"]) != 3:
        raise ValueError(
            f"model=cnn needs image inputs (C, H, W) but data={spec['name']} has inputs of shape "
            f"{tuple(spec['in_shape'])}: use model=mlp"
        )
    return BayesianCNN(spec["in_shape"], spec["num_outputs"], channels=list(cfg.model.channels),
                       kernel_size=cfg.model.kernel_size, hidden=list(cfg.model.hidden), **common)


def guide_options(cfg: DictConfig) -> Dict[str, Any]:
    """Keyword arguments of the guide builder named ``cfg.guide.name``."""
    options = {"init_loc": cfg.guide.init_loc}
    if cfg.guide.name != "auto_delta":
        options["init_scale"] = cfg.guide.init_scale
    if cfg.guide.name == "auto_lowrank":
        options["rank"] = cfg.guide.rank
    return options


def build(cfg: DictConfig, spec: Dict[str, Any], device: str = "cpu") -> Tuple[BayesianModel, nn.Module]:
    """Model and (not yet initialised) guide for ``cfg`` on ``device``."""
    model = build_model(cfg, spec).to(device)
    return model, build_guide(cfg.guide.name, model, **guide_options(cfg))


def _dummy_batch(spec: Dict[str, Any], device) -> Tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros((1, *spec["in_shape"]), device=device)
    y = torch.zeros(1, dtype=torch.long if spec["task"] == "classification" else torch.float32, device=device)
    return x, y


def _save_atomically(blob: Dict[str, Any], path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def _load(path, device, expected_format: str, what: str) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}: pass the run dir of a training run")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        first_line = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        raise ValueError(f"{path} is not a readable pyro_bnn {what} ({type(err).__name__}: {first_line})") from None
    if not isinstance(blob, dict) or blob.get("format") != expected_format:
        found = blob.get("format") if isinstance(blob, dict) else None
        if isinstance(found, str) and found.split("/")[0] == expected_format.split("/")[0]:
            raise ValueError(f"{path} is a {what} of format {found!r}, written by an older pyro_bnn whose "
                             f"guide stored its scales differently; this version reads {expected_format!r}: "
                             "train the run again")
        raise ValueError(f"{path} is not a pyro_bnn {what} (expected format {expected_format!r})")
    return blob


def save_checkpoint(path, training: Dict[str, Any], cfg: DictConfig, spec: Dict[str, Any]) -> None:
    """Write a training state of :func:`pyro_bnn.fit` with its config, atomically."""
    _save_atomically({"format": CHECKPOINT_FORMAT, "config": OmegaConf.to_container(cfg, resolve=True),
                      "data": spec, "training": training}, path)


def load_checkpoint(path) -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``: never executes code)."""
    return _load(path, "cpu", CHECKPOINT_FORMAT, "checkpoint")


def save_posterior(path, model: nn.Module, guide: nn.Module, cfg: DictConfig, spec: Dict[str, Any]) -> None:
    """Write the posterior to ``path`` atomically (temporary file, then rename)."""
    blob = {
        "format": FORMAT,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "data": spec,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "guide_state": {k: v.detach().cpu() for k, v in guide.state_dict().items()},
    }
    _save_atomically(blob, path)


def load_posterior(path, device: str = "cpu") -> Tuple[BayesianModel, nn.Module, DictConfig, Dict[str, Any]]:
    """Rebuild ``(model, guide, config, data spec)`` from a file written by :func:`save_posterior`."""
    blob = _load(path, device, FORMAT, "saved posterior")
    cfg = OmegaConf.create(blob["config"])
    spec = blob["data"]
    model, guide = build(cfg, spec, device)
    initialize_guide(guide, *_dummy_batch(spec, device))
    try:
        model.load_state_dict(blob["model_state"])
        guide.load_state_dict(blob["guide_state"])
    except RuntimeError as err:
        detail = " ".join(str(err).split())  # torch lists the mismatches on several lines
        raise ValueError(f"{path} does not match the model its config describes: {detail}") from None
    return model, guide, cfg, spec
