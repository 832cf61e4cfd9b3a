"""Objects from a config: the model (network, prior, likelihood) and guide of ``cfg``, or of a saved run."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..data import DataSplits, load_data
from ..guides import auto_delta, auto_lowrank, auto_normal
from ..likelihoods import Categorical, Gaussian, HeteroscedasticGaussian
from ..models import BayesianCNN, BayesianMLP, BayesianModel
from ..priors import PRIOR_FAMILIES, NormalPrior, StudentTPrior
from ..serialization import read_posterior, restore_posterior

#: Guide builders by ``guide.name``.
GUIDES = {"auto_normal": auto_normal, "auto_delta": auto_delta, "auto_lowrank": auto_lowrank}


def layer_scales(node) -> Dict[str, float]:
    """``prior.layer_scales`` as ``{layer name: scale}``: a dotted override (``prior.layer_scales.net.0=0.1``)
    arrives nested (``{net: {0: 0.1}}``) and is joined back into the layer's name."""
    flat: Dict[str, float] = {}
    for key, value in (node or {}).items():
        if isinstance(value, (dict, DictConfig)):
            flat.update({f"{key}.{name}": scale for name, scale in layer_scales(value).items()})
        else:
            flat[str(key)] = value
    return flat


def layer_scale_overrides(args: List[str]) -> List[str]:
    """The command line with every ``prior.layer_scales`` override as ``++`` (add or replace), so that
    ``prior.layer_scales={net.4:0.1}``, ``prior=layerwise prior.layer_scales={net.4:0.1}`` and
    ``prior.layer_scales.net.0=0.1`` work as a user expects (Hydra refuses new keys in a plain override)."""
    return ["++" + arg.lstrip("+") if arg.lstrip("+").startswith(("prior.layer_scales=", "prior.layer_scales."))
            else arg for arg in args]


def build_prior(cfg: DictConfig):
    """The prior of ``cfg.prior`` (its family's own options: ``df`` for Student-t, learned scales for Normal)."""
    cls = PRIOR_FAMILIES[cfg.family]
    options = dict(scale=cfg.scale, loc=cfg.loc, layer_scales=layer_scales(cfg.layer_scales), fan_in=cfg.fan_in)
    if cls is StudentTPrior:
        options["df"] = cfg.df
    if cls is NormalPrior:
        options.update(learn_scale=cfg.learn_scale, hyperprior_alpha=cfg.hyperprior_alpha)
    return cls(**options)


def load_run_data(data_cfg: DictConfig) -> DataSplits:
    """The data of ``cfg.data`` (:func:`pyro_bnn.data.load_data`; configs saved before ``data.loader`` existed
    name their loader ``data.name``)."""
    return load_data(data_cfg.get("loader", data_cfg.name), data_cfg.root, data_cfg.download, data_cfg.split_seed,
                     data_cfg.holdout_classes, data_cfg.subset, name=data_cfg.name, split=data_cfg.get("split", 0),
                     validation=data_cfg.get("validation", 0.0))


def build_likelihood(cfg: DictConfig, task: str):
    """The likelihood of ``cfg.model`` for a ``task``: categorical, or the regression likelihood it names."""
    if task == "classification":
        return Categorical()
    if cfg.get("likelihood", "gaussian") == "heteroscedastic":
        return HeteroscedasticGaussian(cfg.noise_floor)
    return Gaussian(cfg.noise_scale, learn_scale=cfg.learn_noise)


def build_model(cfg: DictConfig, spec: Dict[str, Any]) -> BayesianModel:
    """The Bayesian model of ``cfg.model`` and ``cfg.prior`` for data described by ``spec``."""
    likelihood = build_likelihood(cfg.model, spec["task"])
    bayesian = cfg.model.get("bayesian", "all")  # configs saved before model.bayesian existed: all
    common = dict(activation=cfg.model.activation, prior=build_prior(cfg.prior), likelihood=likelihood,
                  num_data=spec["num_data"], bayesian=list(bayesian) if OmegaConf.is_list(bayesian) else bayesian)
    if cfg.model.name == "mlp":
        return BayesianMLP(spec["in_shape"], likelihood.output_size(spec["num_outputs"]), hidden=list(cfg.model.hidden),
                           **common)
    if len(spec["in_shape"]) != 3:
        raise ValueError(
            f"model=cnn needs image inputs (C, H, W) but data={spec['name']} has inputs of shape "
            f"{tuple(spec['in_shape'])}: use model=mlp"
        )
    return BayesianCNN(spec["in_shape"], spec["num_outputs"], channels=list(cfg.model.channels),
                       kernel_size=cfg.model.kernel_size, hidden=list(cfg.model.hidden), **common)


def build_guide(cfg: DictConfig, model: nn.Module) -> nn.Module:
    """The (not yet initialised) guide of ``cfg.guide`` for ``model``."""
    options = {"init_loc": cfg.init_loc}
    if cfg.name != "auto_delta":
        options["init_scale"] = cfg.init_scale
    if cfg.name == "auto_lowrank":
        options["rank"] = cfg.rank
    return GUIDES[cfg.name](model, **options)


def build(cfg: DictConfig, spec: Dict[str, Any], device: str = "cpu") -> Tuple[BayesianModel, nn.Module]:
    """Model and (not yet initialised) guide for ``cfg`` on ``device``."""
    model = build_model(cfg, spec).to(device)
    return model, build_guide(cfg.guide, model)


def posterior_from_file(path, device: str = "cpu") -> Tuple[BayesianModel, nn.Module, DictConfig, Dict[str, Any]]:
    """Rebuild ``(model, guide, config, data spec)`` of a run from its ``posterior.pt``."""
    blob = read_posterior(path, device)
    cfg = OmegaConf.create(blob["config"])
    model, guide = build(cfg, blob["data"], device)
    restore_posterior(blob, model, guide, device, source=str(path))
    return model, guide, cfg, blob["data"]
