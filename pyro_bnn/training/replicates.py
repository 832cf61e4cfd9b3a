"""R posteriors of one network trained as one: the replicates of a sweep in one process and one optimizer step.

The replicates are R ``(model, guide)`` pairs built as usual: a :class:`~pyro_bnn.model.networks.BayesianModel` whose
network is a plain ``nn.Sequential`` of Linear and Conv layers, pooling, activations and Flatten
(:class:`~pyro_bnn.model.networks.BayesianMLP`, :class:`~pyro_bnn.model.networks.BayesianCNN`),
Normal priors and a :class:`~pyro_bnn.guides.MeanFieldNormal` guide, run once (the pairs the fused step trains:
:mod:`pyro_bnn.objectives.fused`). They share the architecture and the likelihood's kind; each has its own prior
(its scale; learned or fixed), its own guide (its starting means and scales, from its own seed) and its own data.

:class:`Replicates` stacks the guides' flat means and log-scales into two ``(R, P)`` parameters and computes every
replicate's ELBO terms at once, with batched matmuls: one network pass, one KL, one backward pass and one Adam step
for all. The loss is the sum of the replicates' losses, so the gradient of each replicate's parameters is that of
its own loss (the others' do not reach them), and Adam's update is elementwise: each replicate trains as it would
alone. Given the same noise, replicate ``r``'s loss and gradients are Pyro's ``TraceMeanField_ELBO`` (``Trace_ELBO``
with ``kl="mc"``) of its own pair (``tests/training/test_replicates.py``). :meth:`Replicates.write_back` puts each
replicate's posterior (and its learned prior scales) back into its own guide and model, which are then an ordinary
trained pair: :func:`~pyro_bnn.io.posterior.save_posterior` saves it, and it loads into a single model.

:func:`~pyro_bnn.training.replicate_fit.fit_replicates` trains them (:func:`~pyro_bnn.training.loop.fit` for
replicates), on the data and noise of :mod:`~pyro_bnn.training.replicate_data`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..guides import initialize_guide
from ..objectives.empirical_bayes import EmpiricalBayes, hyperprior_nll, optimal_variances
from ..objectives.fused import FusedMeanField, SequentialPlan
from ..objectives.normal_kl import NormalKLPrior, normal_kl_of_sums
from .replicate_data import stacked
from .replicate_local import VARIANCE_FLOOR, local_reparameterization

#: The estimators a batch of replicates computes: a shared weight draw per minibatch, local reparameterization
#: (per output position in a convolution; ``dense_local_reparameterization``: in the Linear layers only, the
#: convolutions sharing the weight draw), or the shared draw with Flipout's
#: per-example sign flips.
REPLICATE_ESTIMATORS = ("shared", "local_reparameterization", "dense_local_reparameterization", "flipout")
#: A standard Normal draw of a shape (``torch.randn`` by default; a test gives its own). Flipout's ±1 signs come from
#: its ``signs(shape)`` where it has one (:class:`~pyro_bnn.training.replicate_data.ReplicateNoise`), else from
#: ``torch.randint``.
Draw = Callable[[Tuple[int, ...]], torch.Tensor]


@dataclass
class ReplicateTerms:
    """The ELBO terms of R replicates on their minibatches, in whole-data units, one entry per replicate.

    :ivar nll: ``(R,)`` expected negative log-likelihood of each replicate's data.
    :ivar kl: ``(R,)`` KL(q || p) of each replicate.
    :ivar kl_sites: ``(R, S)`` the KL of each site (no gradient), in the order of :attr:`Replicates.names`.
    :ivar hyperprior: ``(R,)`` the hyperprior's NLL of learned prior scales (no gradient), or None.
    """

    nll: torch.Tensor
    kl: torch.Tensor
    kl_sites: torch.Tensor
    hyperprior: Optional[torch.Tensor] = None

    @property
    def loss(self) -> torch.Tensor:
        """``(R,)`` -ELBO of each replicate (with the hyperprior's NLL where prior scales are learned)."""
        loss = self.nll + self.kl
        return loss if self.hyperprior is None else loss + self.hyperprior

    def record(self, layers: torch.Tensor) -> torch.Tensor:
        """``(R, K)`` detached: loss, nll, kl, the hyperprior's NLL (where learned), then the KL of each layer
        (``layers``: ``(S, L)``, which layer each site belongs to), as :meth:`Replicates.record_keys` names them."""
        columns = [self.loss, self.nll, self.kl] + ([self.hyperprior] if self.hyperprior is not None else [])
        return torch.cat([torch.stack(columns, -1).detach(), self.kl_sites @ layers.to(self.kl_sites)], -1)


class Replicates:
    """R mean-field posteriors of one network, their parameters stacked, their ELBO terms computed as one.

    :param pairs: the replicates' ``(model, guide)`` pairs, each guide run once
        (:func:`~pyro_bnn.guides.initialize_guide`).
    :param str kl: ``"analytic"`` (the closed-form KL) or ``"mc"`` (at the drawn weights).
    :param str estimator: one of :data:`REPLICATE_ESTIMATORS`.

    Each pair is checked as the fused step checks it, and the pairs against the first (the same sites and shapes,
    activations and likelihood), before any work; an error names the replicate by its index.
    """

    def __init__(self, pairs: Sequence[Tuple[nn.Module, nn.Module]], kl: str = "analytic",
                 estimator: str = "local_reparameterization"):
        if estimator not in REPLICATE_ESTIMATORS:
            raise ValueError(f"estimator={estimator!r}: replicates are trained as one with the estimators "
                             f"{list(REPLICATE_ESTIMATORS)}; train each replicate alone (fit) for the others")
        if not pairs:
            raise ValueError("no replicates: pass at least one (model, guide) pair")
        steps = [self._fused(index, model, guide, kl, estimator) for index, (model, guide) in enumerate(pairs)]
        plans = [_plan(index, step) for index, step in enumerate(steps)]
        for index, (step, plan) in enumerate(zip(steps[1:], plans[1:]), 1):
            _check_same_network(index, step, plan, steps[0], plans[0])
        first = steps[0]
        self.pairs, self.kl, self.estimator = [tuple(pair) for pair in pairs], kl, estimator
        self.names, self.sizes, self.shapes = first.names, first.sizes, first.shapes
        self._size_vector = first._size_vector  # (S,): the sites' numbers of weights, on the parameters' device
        # (an elementwise module, None, None), (None, weight site, bias site) of a Linear layer, (the conv, weight
        # site, bias site), or (replicate 0's point-estimate Linear or conv layer, None, None): each replicate's own
        # layers at that step are in _point_layers
        self.layers = plans[0].steps
        self._point_layers = {k: [plan.steps[k][0] for plan in plans] for k, (module, weight, _) in
                              enumerate(self.layers) if weight is None and isinstance(module, (nn.Linear, *_CONVS))}
        self._convolutional = any(isinstance(module, _CONVS) for module, _, _ in self.layers)
        self.likelihood = first.model.likelihood
        like = first.flat()[0]
        self.num_data = torch.tensor([float(step.model.num_data) for step in steps], dtype=like.dtype, device=like.device)
        self.prior_locs = torch.tensor([step.prior_locs for step in steps], dtype=like.dtype, device=like.device)
        self._prior_variances = torch.stack([step.prior_variances for step in steps])  # (R, S)
        self.learned = _stacked_learned(steps)
        self._learned_sites = first._learned_sites
        self.loc = nn.Parameter(torch.stack([step.flat()[0].detach() for step in steps]))
        self.log_scale = nn.Parameter(torch.stack([step.flat()[1].detach() for step in steps]))
        self._site_of = {name: index for index, name in enumerate(self.names)}
        # one likelihood object can score every replicate where none has parameters and all have its settings
        settings = _settings(self.likelihood)
        self._uniform_likelihood = settings is not None and all(
            _settings(step.model.likelihood) == settings for step in steps)

    @staticmethod
    def _fused(index: int, model: nn.Module, guide: nn.Module, kl: str, estimator: str) -> FusedMeanField:
        if getattr(guide, "prototype_trace", None) is None:
            raise ValueError(f"replicate {index}: its guide has no parameters yet: run it once first "
                             "(pyro_bnn.initialize_guide(guide, x, y))")
        try:
            step = FusedMeanField(model, guide, kl=kl, estimator=estimator)
        except ValueError as err:
            raise ValueError(f"replicate {index}: {err}") from None
        return step

    def record_keys(self) -> Tuple[List[str], torch.Tensor]:
        """The names of a step's record (:meth:`ReplicateTerms.record`), as one run's history names its columns, and
        the ``(S, L)`` matrix that sums the sites' KL into their layers'."""
        layer_names = list(dict.fromkeys(name.rpartition(".")[0] for name in self.names))
        layers = torch.zeros(len(self.names), len(layer_names))
        for site, name in enumerate(self.names):
            layers[site, layer_names.index(name.rpartition(".")[0])] = 1.0
        keys = ["loss", "nll", "kl"] + (["hyperprior"] if self.learned is not None else [])
        return keys + [f"kl.{layer}" for layer in layer_names], layers

    def learned_prior_scales(self) -> List[Dict[str, float]]:
        """Each replicate's learned prior scales now, ``{prior_scale.<site>: s}`` ({} where none is learned)."""
        if self.learned is None:
            return [{} for _ in range(self.size)]
        names = [f"prior_scale.{self.names[site]}" for site in self._learned_sites.tolist()]
        scales = self._prior_variances[:, self._learned_sites].sqrt().tolist()
        return [dict(zip(names, row)) for row in scales]

    @property
    def size(self) -> int:
        """R, the number of replicates."""
        return self.loc.shape[0]

    def parameters(self) -> List[nn.Parameter]:
        """What an optimizer of the replicates trains: the stacked means and log-scales, and each model's own
        parameters (a learned noise sd)."""
        return [self.loc, self.log_scale, *(p for index in range(self.size) for p in self.own_parameters(index))]

    def own_parameters(self, index: int) -> List[nn.Parameter]:
        """Replicate ``index``'s model's own trained parameters (a learned noise sd), in :meth:`parameters`' order."""
        return [p for p in self.pairs[index][0].parameters() if p.requires_grad]

    def _views(self, flat: torch.Tensor) -> List[torch.Tensor]:
        """``flat`` ``(R, P)`` as the sites' ``(R, *shape)`` tensors."""
        return [part.reshape(len(flat), *shape) for part, shape in zip(flat.split(self.sizes, -1), self.shapes)]

    def _site_sums(self, values: torch.Tensor) -> torch.Tensor:
        """``(R, S)``: the sum of ``values`` ``(R, P)`` over each site."""
        return torch.stack([part.sum(-1) for part in values.split(self.sizes, -1)], -1)

    def _deviation_squares(self, values: torch.Tensor) -> torch.Tensor:
        """``(R, S)``: ``sum (values - m0)^2`` per site, ``m0`` each replicate's prior location of the site."""
        return torch.stack([(part - m0[:, None]).pow(2).sum(-1) for part, m0 in
                            zip(values.split(self.sizes, -1), self.prior_locs.unbind(-1))], -1)

    @torch.no_grad()
    def _update_learned_scales(self, loc: torch.Tensor, scale: torch.Tensor) -> Optional[torch.Tensor]:
        """Set each replicate's learned prior variances to their optimum given its guide; its hyperprior NLL ``(R,)``."""
        if self.learned is None:
            return None
        square_sums = (self._site_sums(scale * scale) + self._deviation_squares(loc))[:, self._learned_sites]
        alpha, sizes, betas = self.learned
        variances = optimal_variances(square_sums.to(betas), sizes, alpha, betas)
        self._prior_variances = self._prior_variances.clone()
        self._prior_variances[:, self._learned_sites] = variances.to(self._prior_variances)
        return hyperprior_nll(variances, alpha, betas).to(loc)

    def terms(self, x: torch.Tensor, y: torch.Tensor, draw: Draw = None) -> ReplicateTerms:
        """Every replicate's ELBO terms on its minibatch: ``x`` ``(R, B, ...)``, ``y`` ``(R, B)`` (one weight draw,
        its signs flipped per example with Flipout, or one draw per example with local reparameterization; ``draw``:
        the standard Normal draws)."""
        draw = draw or (lambda shape: torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device))
        loc, log_scale = self.loc, self.log_scale
        scale = torch.exp(log_scale)
        hyperprior = self._update_learned_scales(loc, scale)
        variances = self._prior_variances.to(loc)
        local = self.estimator in ("local_reparameterization", "dense_local_reparameterization")
        # the convolutions of dense_local_reparameterization share a weight draw, as a run alone draws them
        shared_convs = self._convolutional and self.estimator == "dense_local_reparameterization"
        weights = (None if local and self.kl == "analytic" and not shared_convs
                   else loc + scale * draw(tuple(loc.shape)))
        if self.kl == "analytic":
            square_sums = self._site_sums(scale * scale) + self._deviation_squares(loc)
            kl_sites = normal_kl_of_sums(self._site_sums(log_scale), square_sums,
                                         NormalKLPrior.of(variances, self._size_vector))
        else:  # log q(w) - log p(w) at the drawn weights, per site; the 2 pi terms cancel
            noise_squares = self._site_sums(((weights - loc) / scale).pow(2))
            log_q = -self._site_sums(log_scale) - 0.5 * noise_squares
            log_p = (-0.5 * self._size_vector * variances.log()
                     - self._deviation_squares(weights) / (2 * variances))
            kl_sites = log_q - log_p
        h = x if self._convolutional else x.reshape(x.shape[0], x.shape[1], -1)
        outputs = self._outputs(h, loc, scale, weights, local, draw)
        return ReplicateTerms(self._nll(outputs, y), kl_sites.sum(-1), kl_sites.detach(), hyperprior)

    def _outputs(self, h, loc, scale, weights, local, draw) -> torch.Tensor:
        """The replicates' outputs ``(R, B, out)`` on ``h`` ``(R, B, ...)``. Convolutions run on the replicates'
        channels side by side, ``(B, R * C, ...)``, as one convolution of ``R`` groups (pooling and activations act
        per channel there too); a Flatten turns that back into ``(R, B, features)``."""
        size = h.shape[0]
        locs, scales = self._views(loc), self._views(scale)
        values = self._views(weights) if weights is not None else None
        grouped = False  # whether h is (B, R * C, ...) (after a convolution) or (R, B, ...)
        for position, (module, weight, bias) in enumerate(self.layers):
            if isinstance(module, _CONVS):
                if not grouped:
                    h, grouped = _side_by_side(h), True
                if position in self._point_layers:  # each replicate's own point-estimate kernels
                    layers = self._point_layers[position]
                    bias_of = None if layers[0].bias is None else torch.cat([layer.bias for layer in layers])
                    h = _conv(module, h, torch.cat([layer.weight for layer in layers]), bias_of, size)
                else:
                    w, b = self._site_of[weight], self._site_of[bias]
                    h = self._conv_layer(module, h, locs[w], locs[b], scales[w], scales[b],
                                         None if values is None else (values[w], values[b]), draw)
                continue
            if position in self._point_layers:  # each replicate's own point-estimate weights
                layers = self._point_layers[position]
                product = torch.bmm(h, torch.stack([layer.weight for layer in layers]).transpose(1, 2))
                h = product if layers[0].bias is None else product + torch.stack([layer.bias for layer in layers])[:, None]
                continue
            if module is not None:  # an activation or pooling (elementwise or per channel), or Flatten
                if isinstance(module, nn.Flatten):
                    h = h.reshape(h.shape[0], size, -1).transpose(0, 1) if grouped else h.reshape(*h.shape[:2], -1)
                    grouped = False
                else:
                    h = module.forward(h)
                continue
            w, b = self._site_of[weight], self._site_of[bias]
            if local:  # each example's pre-activations from their marginal Normal
                noise = draw((h.shape[0], h.shape[1], locs[w].shape[1]))
                h = local_reparameterization(h, locs[w], locs[b], scales[w].pow(2), scales[b].pow(2), noise)
            elif self.estimator == "flipout":  # the shared draw's deviation, its signs flipped per example
                signs = getattr(draw, "signs", _random_signs)
                r = signs((h.shape[0], h.shape[1], h.shape[2])).to(h)
                s = signs((h.shape[0], h.shape[1], locs[w].shape[1])).to(h)
                mean = torch.baddbmm(locs[b].unsqueeze(1), h, locs[w].transpose(1, 2))
                deviation = torch.baddbmm((values[b] - locs[b]).unsqueeze(1), h * r,
                                          (values[w] - locs[w]).transpose(1, 2))
                h = mean + deviation * s
            else:
                h = torch.baddbmm(values[b].unsqueeze(1), h, values[w].transpose(1, 2))
        return h

    def _conv_layer(self, module, h, w_loc, b_loc, w_scale, b_scale, drawn, draw) -> torch.Tensor:
        """A Bayesian convolution of the replicates side by side (``h``: ``(B, R * C_in, ...)``) under the
        estimator: the shared draw ``drawn`` (``dense_local_reparameterization``'s too), per-position local
        reparameterization, or Flipout's signs per example and channel."""
        size, flat = w_loc.shape[0], lambda t: t.reshape(-1, *t.shape[2:])  # (R, C, ...) -> (R * C, ...)
        if self.estimator in ("shared", "dense_local_reparameterization"):
            return _conv(module, h, flat(drawn[0]), flat(drawn[1]), size)
        mean = _conv(module, h, flat(w_loc), flat(b_loc), size)
        batch = h.shape[0]
        if self.estimator == "local_reparameterization":
            variance = _conv(module, h * h, flat(w_scale.pow(2)), flat(b_scale.pow(2)), size)
            noise = _side_by_side(draw((size, batch, mean.shape[1] // size, *mean.shape[2:])))
            return mean + variance.clamp_min(VARIANCE_FLOOR).sqrt() * noise
        signs = getattr(draw, "signs", _random_signs)  # flipout: one sign per example and channel
        positions = (1,) * (h.dim() - 2)
        r = _side_by_side(signs((size, batch, h.shape[1] // size)).to(h)).view(batch, -1, *positions)
        s = _side_by_side(signs((size, batch, mean.shape[1] // size)).to(h)).view(batch, -1, *positions)
        return mean + _conv(module, h * r, flat(drawn[0] - w_loc), flat(drawn[1] - b_loc), size) * s

    def _nll(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(R,)``: ``-(N_r / B) sum_n log p(y_rn | outputs_rn)``, each replicate's own likelihood."""
        scale = self.num_data.to(outputs) / outputs.shape[1]
        if self._uniform_likelihood:  # one distribution over all replicates
            log_p = self.likelihood.distribution(outputs).log_prob(y).sum(-1)
        else:
            log_p = torch.stack([model.likelihood.distribution(out).log_prob(target).sum()
                                 for (model, _), out, target in zip(self.pairs, outputs, y)])
        return -log_p * scale

    @torch.no_grad()
    def write_back(self, rows: Optional[Iterable[int]] = None) -> None:
        """Put each replicate's (of ``rows``; None: all) means and log-scales into its own guide, and its learned
        prior scales into its own model: each pair is then an ordinary trained posterior."""
        for index in range(self.size) if rows is None else rows:
            model, guide = self.pairs[index]
            loc, log_scale = guide.flat_parameters(self.names)
            loc.copy_(self.loc[index])
            log_scale.copy_(self.log_scale[index])
            learned = EmpiricalBayes.of(model)
            if learned is not None:
                learned.set_variances(self._prior_variances[index, self._learned_sites].to(learned.sizes))


def _random_signs(shape: Tuple[int, ...]) -> torch.Tensor:
    return torch.randint(0, 2, shape) * 2 - 1


#: The convolutions a batch of replicates computes (zero padding; any stride, dilation and groups).
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _side_by_side(h: torch.Tensor) -> torch.Tensor:
    """``(R, B, C, ...)`` as ``(B, R * C, ...)``: the replicates' channels side by side."""
    return h.transpose(0, 1).reshape(h.shape[1], h.shape[0] * h.shape[2], *h.shape[3:])


def _conv(module: nn.Module, h: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
          size: int) -> torch.Tensor:
    """``module``'s convolution of ``size`` replicates side by side: their kernels ``weight`` ``(R * C_out, ...)``
    (and biases ``(R * C_out,)``) as groups of one convolution."""
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[h.dim() - 2]
    return conv(h, weight, bias, module.stride, module.padding, module.dilation, module.groups * size)


def _plan(index: int, step: FusedMeanField) -> SequentialPlan:
    """Replicate ``index``'s network as the steps the replicates compute (point-estimate Linear layers included)."""
    plan = SequentialPlan.of(step.model, step.names, points=True, convs=True)
    if plan is None:
        raise ValueError(f"replicate {index}: its network is not a plain nn.Sequential of Linear and Conv layers "
                         "(each Bayesian in its weight and bias, or a point estimate; zero padding), pooling layers, "
                         "activations and Flatten, as BayesianMLP and BayesianCNN build: train it alone (fit)")
    return plan


def _check_same_network(index: int, step: FusedMeanField, plan: SequentialPlan, first: FusedMeanField,
                        first_plan: SequentialPlan) -> None:
    """Refuse a replicate whose network (its pair and plan) or likelihood is not replicate 0's."""
    if step.names != first.names or step.shapes != first.shapes:
        shapes = {name: tuple(shape) for name, shape in zip(step.names, step.shapes)}
        expected = {name: tuple(shape) for name, shape in zip(first.names, first.shapes)}
        raise ValueError(f"replicate {index} has the weights {shapes}, replicate 0 {expected}: replicates share one "
                         "network (the same layers and widths)")
    kinds = [_kind(module) for module, _, _ in plan.steps]
    expected_kinds = [_kind(module) for module, _, _ in first_plan.steps]
    if kinds != expected_kinds:
        raise ValueError(f"replicate {index} has the layers {kinds}, replicate 0 {expected_kinds}: replicates share "
                         "one network (the same activations)")
    if type(step.model.likelihood) is not type(first.model.likelihood):
        raise ValueError(f"replicate {index} has a {type(step.model.likelihood).__name__} likelihood, replicate 0 a "
                         f"{type(first.model.likelihood).__name__}: replicates share the likelihood's kind")
    if step.model.in_shape != first.model.in_shape:
        raise ValueError(f"replicate {index} takes inputs of shape {step.model.in_shape}, replicate 0 "
                         f"{first.model.in_shape}: replicates share one network")


def _kind(module: Optional[nn.Module]) -> str:
    """A step's layer as replicates must share it: a Bayesian Linear layer, or a module with its settings."""
    return "Linear" if module is None else repr(module)


def _settings(likelihood: nn.Module):
    """What a likelihood's distribution depends on besides the outputs: its class, plain attributes and buffers (None
    where it has parameters: each replicate's own)."""
    if any(True for _ in likelihood.parameters()):
        return None
    plain = {key: value for key, value in vars(likelihood).items()
             if not key.startswith("_") and isinstance(value, (bool, int, float, str))}
    return type(likelihood), plain, [buffer.tolist() for buffer in likelihood.buffers()]


class _LearnedScales(NamedTuple):
    """The replicates' learned prior scales: ``alpha``, the sites' ``sizes`` ``(S,)``, each replicate's ``betas``
    ``(R, S)`` (from its configured scales), for :func:`~pyro_bnn.objectives.empirical_bayes.optimal_variances`."""

    alpha: float
    sizes: torch.Tensor
    betas: torch.Tensor


def _stacked_learned(steps: List[FusedMeanField]) -> Optional[_LearnedScales]:
    """The replicates' learned prior scales, or None where none is learned; all or none must learn them, with one
    hyperprior."""
    learned = [step.learned for step in steps]
    if all(part is None for part in learned):
        return None
    for index, part in enumerate(learned):
        if part is None or part.names != learned[0].names or part.alpha != learned[0].alpha:
            raise ValueError(f"replicate {index} learns other prior scales than replicate 0 (learn_scale, "
                             "hyperprior_alpha): replicates share the prior's family and hyperprior, not its scale")
    return _LearnedScales(learned[0].alpha, learned[0].sizes, torch.stack([part.betas for part in learned]))


def build_replicates(pairs: Sequence[Tuple[nn.Module, nn.Module]], loaders: Sequence, kl: str = "analytic",
                     estimator: str = "local_reparameterization") -> Replicates:
    """:class:`Replicates` of ``pairs``, each guide first run on its first batch of ``loaders`` (one loader per
    replicate, or a :class:`~pyro_bnn.training.replicate_data.StackedBatches`: :func:`~pyro_bnn.guides.initialize_guide`)."""
    batches = stacked(loaders)
    for index, (_, guide) in enumerate(pairs):
        if getattr(guide, "prototype_trace", None) is None:
            initialize_guide(guide, *batches.first(index))
    return Replicates(pairs, kl=kl, estimator=estimator)


__all__ = ["Replicates", "ReplicateTerms", "build_replicates", "REPLICATE_ESTIMATORS"]
