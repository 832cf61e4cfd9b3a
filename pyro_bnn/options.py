"""The values the library's options take: a network's shape, a prior's, a likelihood's and a guide's arguments.

The networks, priors, likelihoods and guide builders check their arguments here, and so does the app, on a config,
before it imports torch (this module and :mod:`pyro_bnn.checks` need none): a bad value is refused at once. Checks
that need the model or the data (a rank against the number of weights, ``layer_scales`` against the layers) are the
objects' own, made when they are built.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Mapping, Optional, Sequence, Union

from .checks import ArgumentError, check_count, check_positive

#: The networks' activations: the option's name and its ``torch.nn`` class.
ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "gelu": "GELU", "silu": "SiLU", "elu": "ELU"}
#: A guide's starting means by name (or a mapping ``{site: tensor}``).
INIT_LOCS = ("pytorch", "median")
#: The low-rank guide's largest rank (its covariance factor holds rank x the number of weights numbers).
MAX_RANK = 1_000
#: The largest prior location accepted.
MAX_LOC = 1e3
#: The most predictive draws (each holds the network's outputs on the whole test set).
MAX_SAMPLES = 10_000


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_counts(values, allow_empty: bool) -> bool:
    return not isinstance(values, (int, str)) and (allow_empty or bool(values)) and all(
        isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in (values or ()))


def check_network_options(hidden: Sequence[int] = (), activation: str = "relu", channels: Sequence[int] = (1,),
                          kernel_size: int = 1) -> None:
    """The error :class:`~pyro_bnn.model.networks.BayesianMLP` and :func:`~pyro_bnn.model.networks.cnn_network` give
    for these options, before any work."""
    if not _is_counts(hidden, allow_empty=True):
        raise ArgumentError("hidden", hidden, fix="use a list of layer widths >= 1, e.g. (100, 100) (or () for none)")
    if not _is_counts(channels, allow_empty=False):
        raise ArgumentError("channels", channels, fix="use a non-empty list of channel counts >= 1")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, Integral) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ArgumentError("kernel_size", kernel_size, fix="use an odd integer >= 1")
    if activation not in ACTIVATIONS:
        raise ArgumentError("activation", activation, joiner=" is ", fix=f"not known; choose one of {sorted(ACTIVATIONS)}")


def check_prior_options(scale: float = 1.0, loc: float = 0.0, layer_scales: Optional[Mapping[str, float]] = None,
                        fan_in: bool = False, learn_scale: bool = False, hyperprior_alpha: float = 0.0,
                        df: float = 3.0) -> None:
    """The error a prior (:class:`~pyro_bnn.model.priors.Prior` and its families) gives for these options, before any
    work; each family passes the arguments it takes."""
    check_positive(scale, "scale")
    if not (_is_number(loc) and math.isfinite(loc) and abs(loc) <= MAX_LOC):
        raise ArgumentError("loc", loc, f"use a finite number of magnitude at most {MAX_LOC:g} (weights of that "
                            "size overflow the network's activations)")
    for layer, layer_scale in (layer_scales or {}).items():
        check_positive(layer_scale, f"layer_scales[{layer}]")
    if not isinstance(fan_in, bool):
        raise ArgumentError("fan_in", fan_in, fix="use True or False")
    if not (_is_number(hyperprior_alpha) and math.isfinite(hyperprior_alpha) and hyperprior_alpha >= 0):
        raise ArgumentError("hyperprior_alpha", hyperprior_alpha, fix="use a finite number >= 0 (0: no hyperprior)")
    if hyperprior_alpha and not learn_scale:
        raise ArgumentError("hyperprior_alpha", hyperprior_alpha, joiner=" is ",
                            fix="a hyperprior on learned scales: set learn_scale=True, or hyperprior_alpha=0")
    if not (_is_number(df) and math.isfinite(df) and df > 0):
        raise ArgumentError("df", df, fix="use a finite number > 0 (the Student-t degrees of freedom; 1: Cauchy)")


def check_likelihood_options(scale: float = 1.0, min_scale: float = 1e-3) -> None:
    """The error a likelihood gives for these options, before any work: the Gaussian's noise sd ``scale``, the
    heteroscedastic Gaussian's floor ``min_scale``."""
    check_positive(scale, "scale", "the Gaussian likelihood's noise sd")
    check_positive(min_scale, "min_scale", "the heteroscedastic likelihood's smallest noise sd")


def check_guide_options(init_scale: float = 1e-3, init_loc: Union[str, Mapping] = "pytorch", rank: int = 10) -> None:
    """The error a guide builder (:mod:`pyro_bnn.guides`) gives for these options, before any work (the rank is
    checked against the model's number of weights when the guide is built)."""
    if not (_is_number(init_scale) and math.isfinite(init_scale) and init_scale > 0):
        raise ArgumentError("init_scale", init_scale, fix="use a finite number > 0, e.g. 1e-3 (the posterior's initial sd)")
    if not isinstance(init_loc, Mapping) and init_loc not in INIT_LOCS:
        raise ArgumentError("init_loc", init_loc, joiner=" is ", fix=f"not known; choose one of {list(INIT_LOCS)}")
    check_count(rank, "rank", maximum=MAX_RANK)


def check_num_samples(num_samples: int) -> int:
    """``num_samples`` as an int, if it is a number of predictive draws that fits in memory (:data:`MAX_SAMPLES`)."""
    return check_count(num_samples, "num_samples", maximum=MAX_SAMPLES)
