"""Bayesian networks as Pyro models: a network whose weights are sample sites, plus a likelihood.

``model(x, y=None)`` is a proper Pyro model. The weights are sampled *outside*
the data plate (they are global), then the likelihood observes ``y`` inside a
plate of size ``num_data``::

    model = BayesianCNN(in_shape=(1, 8, 8), num_classes=10, prior=NormalPrior(1.0), num_data=1437)
    trace = pyro.poutine.trace(model).get_trace(x, y)
    # sites: net.0.weight, net.0.bias, ..., obs

Sample site names are the network's parameter names (``net.<i>.weight``).
"""

from __future__ import annotations

import copy
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from pyro.nn import PyroModule, PyroParam
from pyro.nn.module import to_pyro_module_
from torch import nn
from torch.distributions import constraints

from ..batch_checks import INDEX_LAYERS, changing_nothing
from ..checks import check_count
from ..options import ACTIVATIONS, check_network_options
from .layers import BayesianLayer
from .likelihoods import Categorical, Likelihood
from .priors import BAYESIAN_LAYERS, NormalPrior, Prior

#: ``bayesian=``: "all", "last", module names, or a predicate ``(name, module) -> bool``.
LayerChoice = Union[str, Sequence[str], Callable[[str, nn.Module], bool]]
#: Layers whose learned parameters stay point estimates by design (normalisation: scale, shift, statistics).
NORMALISATION_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)

#: The activation layers by name (:data:`~pyro_bnn.options.ACTIVATIONS`).
ACTIVATION_LAYERS = {name: getattr(nn, layer) for name, layer in ACTIVATIONS.items()}


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model`` (of its first buffer; the CPU when it has none)."""
    tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _activation(name: str) -> nn.Module:
    return ACTIVATION_LAYERS[name]()


def layer_type(layer: nn.Module) -> str:
    """The class name of ``layer`` as the user built it (``Linear``, not the ``PyroLinear`` it was converted to)."""
    return next(c.__name__ for c in type(layer).__mro__ if not issubclass(c, (PyroModule, BayesianLayer)))


class BayesianModel(PyroModule):
    """A network with priors on all its Linear/Conv weights and biases, and a likelihood.

    :param nn.Module network: a plain PyTorch network mapping ``(B, *in_shape)`` to outputs.
    :param tuple in_shape: shape of one input (without the batch dimension).
    :param Prior prior: the prior applied to every Linear/Conv layer (default ``NormalPrior(1.0)``).
    :param Likelihood likelihood: observation model (default :class:`Categorical`).
    :param int num_data: size of the training set, for the plate's ``num_data / B`` scaling.
    :param int num_outputs: the network's outputs per example, where known: checked against the likelihood.
    :param bayesian: which Linear/Conv layers get the prior (:func:`~pyro_bnn.model.priors.select_layers`): ``"all"``,
        ``"last"`` (the last Linear layer), module names (``["layer4", "fc"]``) or a predicate ``(name, module)``.
        The other layers' parameters are point estimates owned by the model, trained in the same step by maximum
        likelihood (no prior, no KL term), saved and loaded with the posterior.
    """

    def __init__(
        self,
        network: nn.Module,
        in_shape: Sequence[int],
        prior: Optional[Prior] = None,
        likelihood: Optional[Likelihood] = None,
        num_data: int = 1,
        num_outputs: Optional[int] = None,
        bayesian: LayerChoice = "all",
    ):
        super().__init__()
        if prior is not None and not isinstance(prior, Prior):
            raise TypeError(f"prior={prior!r}: pass a Prior object, e.g. pyro_bnn.NormalPrior(1.0)")
        if likelihood is not None and not isinstance(likelihood, Likelihood):
            raise TypeError(f"likelihood={likelihood!r}: pass a Likelihood object, pyro_bnn.Categorical() or Gaussian()")
        check_count(num_data, "num_data")
        self.likelihood = likelihood if likelihood is not None else Categorical()
        if num_outputs is not None:
            self.likelihood.check_num_outputs(int(num_outputs))
        self.in_shape = tuple(int(d) for d in in_shape)
        self.num_data = int(num_data)
        self.prior = prior if prior is not None else NormalPrior(1.0)
        to_pyro_module_(network)
        self.net = self.prior.apply(network, prefix="net.", bayesian=bayesian)
        _point_estimates_as_pyro_params(self.net)
        #: which layers are Bayesian, as asked (a predicate is recorded as "predicate")
        self.bayesian = "predicate" if callable(bayesian) else (bayesian if isinstance(bayesian, str) else list(bayesian))

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Sample the weights, compute the network outputs, observe ``y``; returns the outputs."""
        outputs = self.outputs(x)
        self.likelihood(outputs, y, self.num_data)
        return outputs

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The network's outputs for ``x`` (sampling the weights), without the likelihood."""
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"{type(self).__name__} takes inputs of shape (batch, {', '.join(map(str, self.in_shape))}), "
                f"got {tuple(x.shape)}; pick a model and data whose shapes agree"
            )
        return self.net(x)

    def point_estimate_layers(self) -> List[Tuple[str, str]]:
        """``(name, type)`` of the network's layers with learned parameters and no prior (point estimates)."""
        return [(name, layer_type(layer)) for name, layer in self.named_modules()
                if not isinstance(layer, Likelihood) and not Prior.site_shapes(layer)
                and any(True for _ in layer.parameters(recurse=False))]

    def num_point_estimates(self) -> int:
        """How many of the network's numbers are point estimates (the likelihood's own parameters not counted)."""
        return sum(p.numel() for name, p in self.named_parameters() if not name.startswith("likelihood."))

    def layer_record(self) -> Dict[str, object]:
        """Which layers are Bayesian (as asked, and as built) and how many numbers are point estimates: for records."""
        return {"bayesian": self.bayesian,
                "bayesian_layers": Prior.layer_names(self),
                "point_estimate_layers": [name for name, _ in self.point_estimate_layers()],
                "num_point_estimates": self.num_point_estimates()}

    def bayesian_layers(self) -> List[Tuple[str, nn.Module]]:
        """``(name, layer)`` of every layer with sample sites, in the network's order."""
        return [(name, layer) for name, layer in self.named_modules() if Prior.site_shapes(layer)]


def _point_estimates_as_pyro_params(network: nn.Module) -> None:
    """Make every parameter left without a prior (Linear/Conv layers that are not Bayesian, BatchNorm's and
    LayerNorm's affine parameters, embeddings, ...) a :class:`~pyro.nn.PyroParam` (real support): Pyro's ``SVI``
    collects a PyroModule's parameters from their ``param`` sites, and fails on a plain ``nn.Parameter`` under
    ``module_local_params`` (state-dict keys ``<name>_unconstrained``; :func:`~pyro_bnn.io.posterior.load_posterior`
    reads files saved with the plain names too). Recurrent layers keep their ``nn.Parameter``s: they hold them in
    flat weight lists of their own (Pyro's ``SVI`` cannot train those; ``fit`` does)."""
    for layer in network.modules():
        if isinstance(layer, nn.RNNBase):
            continue
        for name, param in list(layer.named_parameters(recurse=False)):
            delattr(layer, name)
            setattr(layer, name, PyroParam(param.detach().clone(), constraints.real))


class BayesianMLP(BayesianModel):
    """Fully connected Bayesian network: Flatten, then Linear + activation per hidden width.

    :param in_shape: shape of one input, e.g. ``(64,)`` or ``(1, 8, 8)`` (flattened).
    :param int num_outputs: classes (categorical), or the likelihood's outputs per example
        (``likelihood.output_size(1)``: 1 for :class:`~pyro_bnn.model.likelihoods.Gaussian`, 2 heteroscedastic).
    :param hidden: hidden layer widths.
    :param str activation: one of ``relu, tanh, gelu, silu, elu``.
    """

    def __init__(
        self,
        in_shape: Union[int, Sequence[int]],
        num_outputs: int,
        hidden: Sequence[int] = (100, 100),
        activation: str = "relu",
        prior: Optional[Prior] = None,
        likelihood: Optional[Likelihood] = None,
        num_data: int = 1,
        bayesian: LayerChoice = "all",
    ):
        in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
        check_network_options(hidden=hidden, activation=activation)
        for i, d in enumerate(in_shape):
            check_count(d, f"in_shape[{i}]")
        widths = [int(torch.tensor(in_shape).prod())] + [int(h) for h in hidden]
        layers = [nn.Flatten()]
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(w_in, w_out), _activation(activation)]
        layers.append(nn.Linear(widths[-1], check_count(num_outputs, "num_outputs")))
        super().__init__(nn.Sequential(*layers), in_shape, prior, likelihood, num_data, num_outputs=int(num_outputs),
                         bayesian=bayesian)


def cnn_network(in_shape: Tuple[int, int, int], num_classes: int, channels: Sequence[int] = (64, 128),
                kernel_size: int = 3, hidden: Sequence[int] = (128,), activation: str = "relu") -> nn.Sequential:
    """The plain network of :class:`BayesianCNN` (same arguments): conv blocks (conv, activation, 2x2 max-pool;
    the pooling is skipped once the feature map is smaller than 2x2), then dense layers. A deterministic
    baseline of the same architecture is this network trained as usual."""
    in_shape = tuple(int(d) for d in in_shape)
    if len(in_shape) != 3:
        raise ValueError(f"a BayesianCNN needs image inputs of shape (C, H, W), not in_shape={in_shape}: use a "
                         "BayesianMLP for tabular data")
    check_network_options(hidden=hidden, activation=activation, channels=channels, kernel_size=kernel_size)
    layers = []
    c_prev, h, w = in_shape
    for c in channels:
        layers += [nn.Conv2d(c_prev, int(c), kernel_size, padding=kernel_size // 2), _activation(activation)]
        if h >= 2 and w >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c_prev = int(c)
    layers.append(nn.Flatten())
    widths = [c_prev * h * w] + [int(d) for d in hidden]
    for w_in, w_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(w_in, w_out), _activation(activation)]
    layers.append(nn.Linear(widths[-1], check_count(num_classes, "num_classes")))
    return nn.Sequential(*layers)


class BayesianCNN(BayesianModel):
    """Convolutional Bayesian classifier: conv blocks (conv, activation, 2x2 max-pool), then a dense head.

    Works on any ``(C, H, W)`` input: 1x8x8 digits, 1x28x28 MNIST, 3x32x32 CIFAR-10.
    A block skips its pooling once the feature map is smaller than 2x2 (:func:`cnn_network`).

    :param tuple in_shape: ``(C, H, W)``.
    :param int num_classes: number of classes.
    :param channels: output channels of each conv block.
    :param int kernel_size: odd kernel size; padding keeps the spatial size.
    :param hidden: widths of the dense layers before the output layer.
    """

    def __init__(
        self,
        in_shape: Tuple[int, int, int],
        num_classes: int,
        channels: Sequence[int] = (64, 128),
        kernel_size: int = 3,
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
        prior: Optional[Prior] = None,
        likelihood: Optional[Likelihood] = None,
        num_data: int = 1,
        bayesian: LayerChoice = "all",
    ):
        network = cnn_network(in_shape, num_classes, channels, kernel_size, hidden, activation)
        super().__init__(network, in_shape, prior, likelihood, num_data, num_outputs=int(num_classes),
                         bayesian=bayesian)


def to_bayesian(
    module: nn.Module,
    in_shape: Sequence[int],
    prior: Optional[Prior] = None,
    likelihood: Optional[Likelihood] = None,
    num_data: int = 1,
    bayesian: LayerChoice = "all",
) -> BayesianModel:
    """A Bayesian model from an existing ``torch.nn.Module`` (any architecture): every parameter of its
    Linear/Conv layers (those ``bayesian`` selects, see :class:`BayesianModel`) becomes a sample site with
    ``prior``; ``module`` itself is left untouched (copied). Parameters of other layers (e.g. normalisation)
    stay ordinary learned parameters (point estimates).

    A Bayesian last layer over a trained network's features, its means starting at the trained weights::

        model = to_bayesian(net, in_shape=(3, 32, 32), num_data=50000, bayesian="last")
        guide = auto_normal(model, init_loc=pretrained_weights(net, model=model))

    Start the guide's means at the module's trained weights with :func:`pretrained_weights`::

        model = to_bayesian(net, in_shape=(1, 28, 28), prior=NormalPrior(0.1), num_data=60000)
        guide = auto_normal(model, init_loc=pretrained_weights(net))
    """
    if not any(isinstance(m, BAYESIAN_LAYERS) for m in module.modules()):
        raise ValueError(f"{type(module).__name__} has no Linear or Conv layer to put a prior on; "
                         "to_bayesian converts networks built from nn.Linear / nn.Conv1d/2d/3d layers")
    network = copy.deepcopy(module)
    outputs = _probe(network, in_shape)
    num_outputs = outputs.shape[-1] if isinstance(outputs, torch.Tensor) and outputs.dim() == 2 else None
    likelihood = likelihood if likelihood is not None else Categorical()  # BayesianModel's default
    try:
        if num_outputs is not None and isinstance(likelihood, Likelihood):  # anything else: BayesianModel refuses it
            likelihood.check_num_outputs(num_outputs)
    except ValueError as error:
        raise ValueError(f"to_bayesian: {type(module).__name__} gives {num_outputs} output(s) per example: "
                         f"{str(error).split(': build it with')[0]}; change the network's last layer or the "
                         "likelihood") from None
    model = BayesianModel(network, in_shape, prior=prior, likelihood=likelihood, num_data=num_data, bayesian=bayesian)
    unexpected = [f"{name} ({kind})" for name, kind in model.point_estimate_layers()
                  if not isinstance(model.get_submodule(name), (*BAYESIAN_LAYERS, *NORMALISATION_LAYERS))]
    if unexpected:
        warnings.warn(f"to_bayesian: {', '.join(unexpected)} keep point-estimate parameters (no prior, not in the "
                      "KL): only nn.Linear and nn.Conv1d/2d/3d layers become Bayesian", stacklevel=2)
    return model


def _probe(network: nn.Module, in_shape: Sequence[int]):
    """Run ``network`` once on one input of ``in_shape`` (zeros), changing nothing: its output, or an error naming
    ``in_shape`` if the network does not take it."""
    shape = tuple(check_count(d, f"in_shape[{i}]") for i, d in enumerate(in_shape))
    dtype = next((p.dtype for p in network.parameters() if p.is_floating_point()), torch.get_default_dtype())
    takes_indices = any(isinstance(m, INDEX_LAYERS) for m in network.modules())
    device = next((p.device for p in network.parameters()), torch.device("cpu"))
    x = torch.zeros((1, *shape), dtype=torch.long if takes_indices else dtype, device=device)
    try:
        with changing_nothing(network, device):
            return network(x)
    except (RuntimeError, ValueError, IndexError) as error:
        raise ValueError(f"to_bayesian: {type(network).__name__} does not take inputs of in_shape={shape} (one "
                         f"input of that shape fails: {str(error).splitlines()[0]}); pass the shape of one input, "
                         "without the batch dimension") from None


def pretrained_weights(module: nn.Module, prefix: str = "net.", model: Optional[BayesianModel] = None
                       ) -> Dict[str, torch.Tensor]:
    """``{site name: weight}`` of the Linear/Conv parameters of a plain ``module``, for a guide's ``init_loc``
    (the site names of :func:`to_bayesian`'s model); with ``model``, only its sample sites (a partially Bayesian
    model: its point-estimate layers already hold ``module``'s weights)."""
    weights = {".".join(part for part in (prefix.rstrip("."), layer_name, name) if part): param.detach().clone()
               for layer_name, layer in module.named_modules() if isinstance(layer, BAYESIAN_LAYERS)
               for name, param in layer.named_parameters(recurse=False)}
    if model is None:
        return weights
    sites = {f"net.{layer}.{name}" for layer in Prior.layer_names(model.net)
             for name in Prior.site_shapes(model.net.get_submodule(layer))}
    return {name: value for name, value in weights.items() if name in sites}


__all__ = ["BayesianModel", "BayesianMLP", "BayesianCNN", "cnn_network", "to_bayesian", "pretrained_weights"]
