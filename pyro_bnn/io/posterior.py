"""Save a trained posterior to a file and load it back; every file written atomically.

A saved posterior (``posterior.pt``) is a plain dict of tensors and primitives,
written with :func:`torch.save` and read with ``torch.load(weights_only=True)``
(loading never executes code)::

    {"format": "pyro_bnn.posterior/2", "config": {...}, "data": {...},
     "model_state": {...}, "guide_state": {...}}

``data`` is what the model needs to know about its data (:func:`data_spec`); ``config`` is whatever
describes how the pair was built (the Hydra app stores its run config there, and rebuilds the pair from
it: :func:`pyro_bnn.app.build.posterior_from_file`). Loading needs a model and guide built the same way::

    model, guide = BayesianCNN(...), auto_normal(...)
    load_posterior("posterior.pt", model, guide)

Autoguides create their parameters on their first call, so :func:`load_posterior` runs the guide once
on a dummy batch before loading its state.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import nn

from ..batch_checks import INDEX_LAYERS, changing_nothing
from ..data.splits import DataSplits
from ..guides import initialize_guide
from .files import read_file, save_file

#: Version 2: the mean-field guide stores log(scale) (version 1 stored softplus^-1(scale)).
FORMAT = "pyro_bnn.posterior/2"


def data_spec(data: DataSplits) -> Dict[str, Any]:
    """What the model needs to know about the data, saved with the posterior."""
    return {"name": data.name, "in_shape": list(data.in_shape), "num_outputs": data.num_outputs,
            "task": data.task, "num_data": data.num_train, "target_mean": data.target_mean,
            "target_std": data.target_std}


def save_posterior(path, model: nn.Module, guide: nn.Module, data: Dict[str, Any],
                   config: Optional[Dict[str, Any]] = None) -> None:
    """Write the trained ``model`` and ``guide`` to ``path`` atomically.

    :param dict data: the data's description, :func:`data_spec` (``in_shape`` and ``task`` at least).
    :param dict config: plain values that describe how the pair was built, stored as they are.
    """
    _check_spec(data, model, "data")
    if not any(True for _ in guide.parameters()):
        raise ValueError("save_posterior: the guide has no parameters yet (it was never run): train it with fit (or "
                         "run it once, pyro_bnn.initialize_guide) before saving")
    save_file(path, {
        "format": FORMAT,
        "config": dict(config or {}),
        "data": dict(data),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "guide_state": {k: v.detach().cpu() for k, v in guide.state_dict().items()},
    })


TASKS = ("classification", "regression")


def _check_spec(spec: Any, model: nn.Module, source: str) -> None:
    """``spec`` (a posterior's ``data``) describes ``model``: ``in_shape`` and ``task`` there, and equal to the model's."""
    if not isinstance(spec, dict) or "in_shape" not in spec or spec.get("task") not in TASKS:
        raise ValueError(f"{source}={spec!r} must describe the data: a dict with 'in_shape' (one input's shape) and "
                         f"'task' (one of {list(TASKS)}), e.g. pyro_bnn.data_spec(data)")
    in_shape = getattr(model, "in_shape", None)
    if in_shape is not None and tuple(spec["in_shape"]) != tuple(in_shape):
        raise ValueError(f"{source} is for a model of inputs of shape {tuple(spec['in_shape'])}, the model's inputs "
                         f"have shape {tuple(in_shape)}: build the model the posterior was trained with")
    task = getattr(getattr(model, "likelihood", None), "task", None)
    if task is not None and task != spec["task"]:
        raise ValueError(f"{source} is for a {spec['task']} model, the model is a {task} one "
                         f"({type(model.likelihood).__name__}): build the model the posterior was trained with")


def read_posterior(path, device="cpu") -> Dict[str, Any]:
    """The content of a file written by :func:`save_posterior` (its ``config`` and ``data`` included)."""
    return read_file(path, FORMAT, "saved posterior", device)


def load_posterior(path, model: nn.Module, guide: nn.Module, device="cpu") -> Dict[str, Any]:
    """Load the posterior saved at ``path`` into ``model`` and ``guide`` (built as the saved pair was).

    :return: the file's content (:func:`read_posterior`), e.g. its ``config`` and ``data``.
    """
    blob = read_posterior(path, device)
    restore_posterior(blob, model, guide, device, source=str(path))
    return blob


def _check_same_prior(model: nn.Module, saved: Dict[str, torch.Tensor], source: str) -> None:
    """Refuse a saved posterior whose fixed prior (the ``*_prior_loc`` / ``*_prior_scale`` buffers) differs from the
    model's: loading would silently replace the model's prior. Learned prior scales are part of the posterior."""
    learned = getattr(getattr(model, "prior", None), "learn_scale", False)
    own = model.state_dict()
    for key, value in saved.items():
        if key.endswith("_prior_loc") or (key.endswith("_prior_scale") and not learned):
            if key in own and own[key].shape == value.shape and not torch.allclose(own[key].cpu(), value.cpu()):
                raise ValueError(f"{source} was trained under another prior than the model's ({key}: saved "
                                 f"{float(value.reshape(-1)[0]):g}, the model's {float(own[key].reshape(-1)[0]):g}): "
                                 "build the model with the prior it was trained with")


def _point_estimate_keys(saved: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``saved`` with the keys of a file written before every point estimate was a PyroParam (``bn.weight``, now
    ``bn.weight_unconstrained``: real support, the same value) under the names the model has now."""
    renamed = {key[:-len("_unconstrained")]: key for key in expected
               if key.endswith("_unconstrained") and key not in saved and key[:-len("_unconstrained")] in saved}
    return {renamed.get(key, key): value for key, value in saved.items()}


def restore_posterior(blob: Dict[str, Any], model: nn.Module, guide: nn.Module, device="cpu",
                      source: str = "the saved posterior") -> None:
    """Load the states of :func:`read_posterior`'s ``blob`` into ``model`` and ``guide``."""
    spec = blob["data"]
    _check_spec(spec, model, source)
    indices = any(isinstance(m, INDEX_LAYERS) for m in model.modules())  # an nn.Embedding takes integer inputs
    x = torch.zeros((1, *spec["in_shape"]), dtype=torch.long if indices else torch.get_default_dtype(), device=device)
    y = torch.zeros(1, dtype=torch.long if spec["task"] == "classification" else torch.float32, device=device)
    with changing_nothing(model, torch.device(device)):  # evaluation mode: a BatchNorm takes the batch of one
        initialize_guide(guide, x, y)
    _check_same_prior(model, blob["model_state"], source)
    try:
        model.load_state_dict(_point_estimate_keys(blob["model_state"], model.state_dict()))
        guide.load_state_dict(blob["guide_state"])
    except RuntimeError as err:
        detail = " ".join(str(err).split())  # torch lists the mismatches on several lines
        raise ValueError(f"{source} does not match the model and guide it was loaded into: {detail}") from None


__all__ = ["save_posterior", "load_posterior", "data_spec"]
