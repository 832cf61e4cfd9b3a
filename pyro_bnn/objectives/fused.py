"""A fused training step for the mean-field Normal guide: one noise draw, and the closed-form KL by hand.

:func:`pyro_bnn.objectives.elbo.elbo_terms` traces the guide and the model with Pyro, building a distribution, a
noise draw and a KL per site; for a large network most of its time goes to hundreds of small elementwise
operations. In the common case, a :class:`~pyro_bnn.guides.MeanFieldNormal` guide over a
:class:`~pyro_bnn.model.networks.BayesianModel` whose priors are all Normal, :class:`FusedMeanField` computes the
same terms with a few operations over whole vectors:

* the guide's means and log-scales are its two flat parameters (:meth:`~pyro_bnn.guides.MeanFieldNormal.
  flat_parameters`, the storage its per-site parameters are views of): one optimizer step updates all;
* one ``normal_`` draws the noise of every weight, ``w = loc + exp(log_scale) * eps``;
* the KL is the closed form of :mod:`pyro_bnn.objectives.normal_kl` summed per site, with its gradient written out
  (:class:`MeanFieldSample`); with ``kl="mc"`` it is ``log q(w) - log p(w)`` at the
  drawn ``w``;
* the network runs on the drawn weights (:func:`pyro.poutine.condition` of the model's weight sites; a plain
  ``nn.Sequential`` of Linear layers and activations, as :class:`~pyro_bnn.model.networks.BayesianMLP` builds, runs its
  layers directly: :class:`SequentialPlan`, the same operations without Pyro's per-site messages) and the NLL
  is the model's own likelihood, ``-(N/B) sum_n log p(y_n | x_n, w)``.

Given the same noise, the loss and its gradients equal those of Pyro's ``TraceMeanField_ELBO``
(``Trace_ELBO`` for ``kl="mc"``) on the same model and guide (``tests/objectives/test_fused.py``). The estimators of
:mod:`pyro_bnn.objectives.estimators` apply as well; local reparameterization with the closed-form KL draws no
weight noise at all.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from pyro import poutine
from torch import nn
from torch.distributions import constraints

from ..checks import ArgumentError
from ..guides import MeanFieldNormal
from ..model.layers import BayesianLayer
from ..model.networks import ACTIVATION_LAYERS, BayesianModel
from ..model.priors import normal_params, site_prior
from .elbo import KL_KINDS, ElboTerms, average_terms
from .empirical_bayes import EmpiricalBayes
from .estimators import Normal, estimator_handler
from .normal_kl import NormalKLPrior, normal_kl_of_sums


def unfusable_reason(model: nn.Module, guide: nn.Module) -> Optional[str]:
    """Why :class:`FusedMeanField` cannot train ``guide`` on ``model``; None when it can.

    ``guide`` must have been run once (:func:`pyro_bnn.guides.initialize_guide`).
    """
    if not isinstance(model, BayesianModel):
        return f"the model is a {type(model).__name__}, not a pyro_bnn BayesianModel"
    if not isinstance(guide, MeanFieldNormal):
        return f"the guide is a {type(guide).__name__}, not the mean-field Normal (guide=auto_normal)"
    if guide.scale_constraint is not constraints.positive:
        return f"the guide's scales use the constraint {guide.scale_constraint}, not positive (log-scales)"
    for name, _ in guide.prototype_trace.iter_stochastic_nodes():
        try:
            prior = site_prior(model, name)
        except (AttributeError, KeyError):
            return f"the guide's site {name} is not a weight of the model's network"
        params = normal_params(prior)
        if params is None:
            return f"the prior of {name} is not a Normal (prior=normal)"
        if any(bool((t != t.reshape(-1)[0]).any()) for t in params):
            return f"the prior of {name} has more than one location or scale across its weights"
    return None


class SequentialPlan:
    """The network of a :class:`~pyro_bnn.model.networks.BayesianModel` run on given weights without Pyro: for an
    ``nn.Sequential`` of Flatten, Linear layers whose weight and bias are both sample sites, and the activations
    of :data:`~pyro_bnn.model.networks.ACTIVATION_LAYERS`, each with its class's own ``forward`` and no hooks. The same
    operations as the model's under the step's estimator (each Linear layer is the estimator's ``dense``, what it
    computes for the layer's message), without the per-site ``pyro.sample`` messages of
    :func:`pyro.poutine.condition` and the layers' own messages (most of a step of a small MLP).
    """

    #: The layers it runs, by the class whose ``forward`` they must keep.
    LAYERS = (nn.Linear, nn.Flatten, *ACTIVATION_LAYERS.values())
    #: What a plan of ``convs=True`` runs besides: convolutions (zero padding) and the pooling layers between them.
    CONV_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d,
                   nn.AvgPool2d, nn.AvgPool3d)

    def __init__(self, steps: List[Tuple[Optional[nn.Module], Optional[str], Optional[str]]]):
        self.steps = steps  # (module, None, None) for a layer without sites, (None, weight site, bias site) for Linear

    @classmethod
    def of(cls, model: nn.Module, names: List[str], points: bool = False,
           convs: bool = False) -> Optional["SequentialPlan"]:
        """The plan of ``model``'s network, whose sample sites are ``names``; None where it does not apply.

        :param bool points: a Linear (or Conv) layer with neither site (a point estimate) is a step of its own,
            ``(layer, None, None)``, run by its own ``forward`` (else such a network has no plan).
        :param bool convs: the network may hold the layers of :data:`CONV_LAYERS` too; a convolution whose weight
            and bias are sites is the step ``(layer, weight site, bias site)`` (the layer for its settings).
        """
        net = getattr(model, "net", None)
        if type(model).outputs is not BayesianModel.outputs or not isinstance(net, nn.Sequential):
            return None
        steps, covered = [], []
        layers = cls.LAYERS + (cls.CONV_LAYERS if convs else ())
        for index, module in enumerate(net):
            base = next((c for c in layers if isinstance(module, c)), None)
            hooked = (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                      or module._backward_pre_hooks)
            own_forward = type(module).forward in (base.forward, BayesianLayer.forward) if base is not None else False
            if not own_forward or hooked or any(True for _ in module.children()):
                return None
            if base in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d):
                weight, bias = f"net.{index}.weight", f"net.{index}.bias"
                if base is not nn.Linear and module.padding_mode != "zeros":
                    return None
                if points and weight not in names and bias not in names:
                    steps.append((module, None, None))
                    continue
                if weight not in names or bias not in names:
                    return None  # a point-estimate or bias-free layer: the model's own forward
                steps.append((None if base is nn.Linear else module, weight, bias))
                covered += [weight, bias]
            else:
                steps.append((module, None, None))
        return cls(steps) if sorted(covered) == sorted(names) else None

    def __call__(self, model: BayesianModel, x: torch.Tensor, normals: Dict[str, Normal], estimator,
                 rows: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """The network's outputs on ``x``, each Linear layer computed by ``estimator``'s
        :meth:`~pyro_bnn.objectives.estimators.SharedDraw.dense` from its sites' ``(value, loc, scale)`` in ``normals``."""
        if tuple(x.shape[1:]) != model.in_shape:
            return model.outputs(x)  # its error names the shapes
        h = x
        for module, weight, bias in self.steps:
            h = module.forward(h) if module is not None else estimator.dense(h, normals[weight], normals[bias], rows)
        return h


def prior_runs(sizes: List[int], prior_locs: List[float], prior_precisions: List[float],
               learned: Optional[List[bool]] = None) -> List[tuple]:
    """Runs of consecutive sites with the same fixed prior ``N(m0, s0^2)``, as ``(slice of the flat vector, m0,
    index of the run's first site)``: one run for a network whose weights share one prior. A site whose scale
    is learned (``learned[i]``) is a run of its own."""
    learned = learned or [False] * len(sizes)
    runs, keys, start = [], [], 0
    for index, (size, m0, precision, own) in enumerate(zip(sizes, prior_locs, prior_precisions, learned)):
        key = None if own else (m0, precision)
        if runs and key is not None and keys[-1] == key:
            runs[-1] = (slice(runs[-1][0].start, start + size), m0, runs[-1][2])
        else:
            runs.append((slice(start, start + size), m0, index))
            keys.append(key)
        start += size
    return runs


class MeanFieldSample(torch.autograd.Function):
    """The fused forward and backward pass of the mean-field sites.

    Forward: ``scale = exp(log_scale)``, the weights ``loc + scale * noise`` (None without noise), and
    ``KL(N(loc, scale^2) || N(m0, s0^2))`` summed per site (:func:`~pyro_bnn.objectives.normal_kl.normal_kl_of_sums`): one sum
    and two dot products per site. The total is differentiable, the per-site
    values are not. Backward: the gradients of weights, scale and KL with respect to ``loc`` and
    ``log_scale``, written out and in place where possible (each temporary is a pass through memory).
    """

    @staticmethod
    def forward(ctx, loc, log_scale, noise, fused, square_sums=None):
        scale = torch.exp(log_scale)
        sums = torch.stack([part.sum() for part in log_scale.split(fused.sizes)])
        # sum(sigma^2 + (mu - m0)^2) per site: given when the step has already computed it (learned prior scales)
        square_sums = fused.square_sums(loc, scale) if square_sums is None else square_sums
        sites = normal_kl_of_sums(sums, square_sums, fused.kl_prior)
        weights = torch.addcmul(loc, scale, noise) if noise is not None else None
        ctx.fused, ctx.precision = fused, fused.precision
        ctx.set_materialize_grads(False)  # an unused output (``scale`` without an estimator) gets None, not zeros
        ctx.save_for_backward(loc, scale, noise)
        ctx.mark_non_differentiable(sites)
        return weights, scale, sites.sum(), sites

    @staticmethod
    def backward(ctx, grad_weights, grad_scale, grad_kl, _):
        loc, scale, noise = ctx.saved_tensors
        # d / d log_scale = scale * d / d scale:  weights -> scale * noise, KL -> scale^2 / s0^2 - 1
        # d KL / d loc = (loc - m0) / s0^2
        if grad_kl is None:  # the KL did not reach the loss
            grad_kl = torch.zeros((), dtype=loc.dtype, device=loc.device)
        d_scale = grad_weights * noise if grad_weights is not None else torch.zeros_like(scale)
        if grad_scale is not None:
            d_scale.add_(grad_scale)
        grad_loc = torch.empty_like(loc)
        for where, m0, site in ctx.fused.prior_runs:
            precision = ctx.precision[site]
            d_scale[where].addcmul_(scale[where], grad_kl * precision)
            deviation = loc[where] if m0 == 0 else loc[where] - m0
            if grad_weights is None:
                torch.mul(deviation, grad_kl * precision, out=grad_loc[where])
            else:
                torch.addcmul(grad_weights[where], deviation, grad_kl * precision, out=grad_loc[where])
        return grad_loc, d_scale.mul_(scale).sub_(grad_kl), None, None, None


class FusedMeanField:
    """The ELBO terms of a mean-field Normal guide over a Normal-prior BayesianModel, from flat vectors.

    :param model: a :class:`~pyro_bnn.model.networks.BayesianModel` whose weight priors are all Normal, with one
        location and one scale per site (as every :class:`~pyro_bnn.model.priors.NormalPrior` gives).
    :param guide: its :class:`~pyro_bnn.guides.MeanFieldNormal`, already run once: the step reads and differentiates
        the guide's flat parameters (:meth:`flat`: the storage of its per-site parameters).
    :param str kl: ``"analytic"`` (TraceMeanField_ELBO) or ``"mc"`` (Trace_ELBO).
    :param str estimator: ``"shared"``, ``"local_reparameterization"`` or ``"flipout"``.

    The prior is read once, here; learned prior scales (``NormalPrior(learn_scale=True)``) are set to their
    optimum given the guide at every call (:mod:`pyro_bnn.objectives.empirical_bayes`). ``terms(x, y).kl_sites`` are
    values (no gradient); ``terms.kl`` and ``terms.nll`` are differentiable.
    """

    def __init__(self, model: nn.Module, guide: nn.Module, kl: str = "analytic", estimator: str = "shared"):
        if kl not in KL_KINDS:
            raise ArgumentError("kl", kl, joiner=" is ", fix=f"not known; choose one of {list(KL_KINDS)}")
        if getattr(guide, "prototype_trace", None) is None:
            raise ValueError("the guide has no parameters yet: run it once first (pyro_bnn.initialize_guide)")
        reason = unfusable_reason(model, guide)
        if reason is not None:
            raise ValueError(f"the fused mean-field step cannot train this pair: {reason}; use fused=False")
        self.model, self.kl, self.handler = model, kl, estimator_handler(estimator)
        self.names = [name for name, _ in guide.prototype_trace.iter_stochastic_nodes()]
        self.guide = guide
        self._flat = guide.flat_parameters(self.names)  # made once: the pair's training does not move the guide
        locs, _ = guide.site_parameters(self.names)
        self.shapes = [p.shape for p in locs]
        self.sizes = [p.numel() for p in locs]
        first = locs[0]
        priors = [normal_params(site_prior(model, name)) for name in self.names]
        self.prior_locs = [float(loc.reshape(-1)[0]) for loc, _ in priors]
        variances = torch.stack([scale.reshape(-1)[0] for _, scale in priors]).detach().to(first) ** 2
        self.learned = EmpiricalBayes.of(model)
        learned = set(self.learned.names) if self.learned is not None else set()
        self._learned_sites = torch.tensor([self.names.index(name) for name in self.learned.names]
                                           if self.learned is not None else [], dtype=torch.long)
        self.prior_runs = prior_runs(self.sizes, self.prior_locs, variances.reciprocal().tolist(),
                                     [name in learned for name in self.names])
        self._size_vector = torch.tensor(self.sizes, dtype=first.dtype, device=first.device)
        self._set_prior_variances(variances)
        self.plan = SequentialPlan.of(model, self.names)

    def flat(self) -> Tuple[nn.Parameter, nn.Parameter]:
        """The guide's means and log-scales as its two flat parameters (:meth:`~pyro_bnn.guides.MeanFieldNormal.
        flat_parameters`: the storage of its per-site parameters): what an optimizer of this step trains."""
        return self._flat

    def to_site_gradients(self) -> None:
        """Hand the flat parameters' gradients to the guide's per-site parameters (views of them), for an optimizer
        of those (Pyro's, under ``SVI``)."""
        for vector, params in zip(self.flat(), self.guide.site_parameters(self.names)):
            if vector.grad is not None:
                for grad, param in zip(self._views(vector.grad), params):
                    param.grad = grad if param.grad is None else param.grad + grad
                vector.grad = None

    def _set_prior_variances(self, variances: torch.Tensor) -> None:
        """The per-site prior tensors of the KL from the prior variances ``s0^2`` (new tensors, never in place:
        a backward pass still to come reads those of its own step)."""
        self.prior_variances = variances
        self.precision = variances.reciprocal()
        self.kl_prior = NormalKLPrior.of(variances, self._size_vector)
        self.log_prior_scale = 0.5 * self._size_vector * variances.log()

    def square_sums(self, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``sum(sigma^2 + (mu - m0)^2)`` per site: what the closed-form KL and the optimal prior variance read."""
        return torch.stack([torch.dot(part, part) for part in scale.split(self.sizes)]) + torch.stack(
            [torch.dot(part, part) for part in self.deviations(loc)])

    @torch.no_grad()
    def _update_learned_scales(self, loc, log_scale) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Set every learned prior scale to its optimum given the current guide
        (:meth:`~pyro_bnn.objectives.empirical_bayes.EmpiricalBayes.update_from_sums`): the hyperprior's NLL, and the per-site
        square sums it was computed from (the step's KL reads them too); (None, None) without any."""
        if self.learned is None:
            return None, None
        index = self._learned_sites
        sums = self.square_sums(loc, torch.exp(log_scale))
        learned, hyperprior = self.learned.update_from_sums(sums[index])
        variances = self.prior_variances.clone()
        variances[index] = learned
        self._set_prior_variances(variances)
        return hyperprior, sums

    def deviations(self, weights: torch.Tensor) -> List[torch.Tensor]:
        """``weights - m0`` per site (flat views where ``m0 = 0``)."""
        return [part if m0 == 0 else part - m0 for part, m0 in zip(weights.split(self.sizes), self.prior_locs)]

    def _views(self, flat: torch.Tensor) -> List[torch.Tensor]:
        return [part.view(shape) for part, shape in zip(flat.split(self.sizes), self.shapes)]

    def _nll(self, x, y, weights, loc, scale, rows) -> torch.Tensor:
        values = self._views(weights)
        normals = (zip(values, self._views(loc) if weights is not loc else values, self._views(scale))
                   if self.handler.reads_normals else ((value, None, None) for value in values))
        if self.plan is not None and not (torch.nn.modules.module._global_forward_hooks
                                          or torch.nn.modules.module._global_forward_pre_hooks):
            outputs = self.plan(self.model, x, dict(zip(self.names, normals)), self.handler, rows)
        else:
            with self.handler.for_rows(rows):
                for name, (value, loc, sd) in zip(self.names, normals):
                    if loc is not None:
                        self.handler.register(name, value, loc, sd)
                with poutine.condition(data=dict(zip(self.names, values))):
                    outputs = self.model.outputs(x)
        return -self.model.likelihood.log_likelihood(outputs, y, self.model.num_data)

    def _terms(self, nll, kl, kl_sites, hyperprior) -> ElboTerms:
        return ElboTerms(nll, kl, dict(zip(self.names, kl_sites.detach())), self.model.num_data, hyperprior=hyperprior)

    def _analytic_particle(self, x, y, rows, loc, log_scale, hyperprior, square_sums) -> ElboTerms:
        no_draw = not self.handler.needs_weight_draw
        noise = None if no_draw else torch.randn_like(loc)
        weights, scale, kl, kl_sites = MeanFieldSample.apply(loc, log_scale, noise, self, square_sums)
        # local reparameterization reads only the means and scales
        return self._terms(self._nll(x, y, loc if no_draw else weights, loc, scale, rows), kl, kl_sites, hyperprior)

    def _sampled_particle(self, x, y, rows, loc, log_scale, hyperprior, square_sums) -> ElboTerms:
        scale = torch.exp(log_scale)
        noise = torch.randn_like(scale)
        weights = torch.addcmul(loc, scale, noise)
        # log q(w) - log p(w) per site; the 2 pi terms cancel
        log_q = torch.stack([part.sum() for part in log_scale.split(self.sizes)]).neg() - 0.5 * torch.stack(
            [torch.dot(part, part) for part in noise.split(self.sizes)])
        log_p = -self.log_prior_scale - self.kl_prior.half_precision * torch.stack(
            [torch.dot(part, part) for part in self.deviations(weights)])
        kl_sites = log_q - log_p
        return self._terms(self._nll(x, y, weights, loc, scale, rows), kl_sites.sum(), kl_sites, hyperprior)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, num_particles: int = 1,
                 rows: Optional[Tuple[int, int]] = None) -> ElboTerms:
        """NLL and KL of the minibatch ``(x, y)``, averaged over ``num_particles`` weight draws.

        :param rows: ``(first row, rows of the whole minibatch)`` where ``(x, y)`` is this process's part of a
            minibatch (:mod:`pyro_bnn.training.distributed`): per-example noise is drawn for the whole minibatch.
        """
        particle = self._analytic_particle if self.kl == "analytic" else self._sampled_particle
        loc, log_scale = self.flat()
        hyperprior, square_sums = self._update_learned_scales(loc, log_scale)
        return average_terms([particle(x, y, rows, loc, log_scale, hyperprior, square_sums)
                              for _ in range(int(num_particles))])


__all__ = ["FusedMeanField"]
