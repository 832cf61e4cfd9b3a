"""The training objective as a Pyro ELBO: :class:`MeanFieldELBO`.

One object computes the loss terms of a pyro_bnn model and guide for :func:`pyro_bnn.fit` and for Pyro's own
inference: ``pyro.infer.SVI(model, guide, optim, loss=MeanFieldELBO())`` trains the pair, as Pyro's
``TraceMeanField_ELBO`` would, and its loss equals ``TraceMeanField_ELBO``'s given the same noise (``kl="mc"``:
``Trace_ELBO``'s). Like Pyro's ``TraceMeanField_ELBO``, which only overrides how ``Trace_ELBO`` computes a particle's
loss, it is a subclass of :class:`pyro.infer.Trace_ELBO` whose loss comes from one of two computations of the same
estimate, chosen once per model and guide:

* the fused mean-field step (:class:`~pyro_bnn.objectives.fused.FusedMeanField`) for a mean-field Normal guide over Normal
  priors: one noise draw over the guide's parameters read as flat vectors, the closed-form KL by hand;
* Pyro's traces of the guide and the model (:func:`~pyro_bnn.objectives.elbo.elbo_terms`) for every other pair.

Both apply the estimator (:mod:`pyro_bnn.objectives.estimators`) and set learned prior scales
(:mod:`pyro_bnn.objectives.empirical_bayes`) before each step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Tuple, Union

import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.poutine.runtime import am_i_wrapped
from torch import nn

from ..checks import ArgumentError, check_count
from ..guides import initialize_guide, is_mean_field
from .elbo import KL_KINDS, ElboTerms, elbo_terms
from .empirical_bayes import EmpiricalBayes
from .estimators import estimator_handler
from .fused import FusedMeanField, unfusable_reason

#: ``fused`` choices: the fused mean-field step wherever it applies, always (an error where it cannot), never.
FUSED = ("auto", True, False)
#: Weight draws per step beyond which a step only exhausts memory (each draw holds the network's activations).
MAX_PARTICLES = 1_000


def is_fused_choice(value) -> bool:
    """Whether ``value`` is one of :data:`FUSED` (``True``/``False`` themselves, not 1 or 0)."""
    return isinstance(value, bool) or value == "auto"


def parameters_of(*modules: nn.Module) -> List[torch.nn.Parameter]:
    """The parameters of ``modules``, each once (a module shared by two is not trained twice)."""
    seen, params = set(), []
    for module in modules:
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


class MeanFieldELBO(Trace_ELBO):
    """``-ELBO = NLL + KL`` of a pyro_bnn model and guide, as a Pyro ELBO.

    :param int num_particles: weight draws per step.
    :param str kl: ``"analytic"`` (the closed form where there is one: ``TraceMeanField_ELBO``) or ``"mc"``
        (``log q(w) - log p(w)`` at the drawn weights: ``Trace_ELBO``).
    :param str estimator: how the Bayesian layers draw their noise (:data:`~pyro_bnn.objectives.estimators.ESTIMATORS`).
    :param fused: ``"auto"``: the fused mean-field step where it applies (guide
        :func:`~pyro_bnn.guides.auto_normal`, Normal priors), Pyro's traces elsewhere; ``True``: the fused step or an
        error saying why it cannot; ``False``: Pyro's traces. Both estimate the same loss; their noise is drawn
        differently, so a seed gives other numbers.
    :param bool validate: :func:`~pyro_bnn.fit` runs with Pyro's distribution argument validation (slower; on in
        tests). Under Pyro's own ``SVI`` it is Pyro's setting (``pyro.enable_validation``), as for its ELBOs.

    ``terms(model, guide, x, y)`` gives the terms apart (:class:`~pyro_bnn.objectives.elbo.ElboTerms`); ``differentiable_loss``,
    ``loss`` and ``loss_and_grads`` are Pyro's. The model and guide of the last call are prepared once (which
    computation, the estimator's handler, the learned prior scales) and kept for the next.
    """

    def __init__(self, num_particles: int = 1, kl: str = "analytic", estimator: str = "shared",
                 fused: Union[str, bool] = "auto", validate: bool = False):
        check_count(num_particles, "num_particles", maximum=MAX_PARTICLES)
        if kl not in KL_KINDS:
            raise ArgumentError("kl", kl, joiner=" is ", fix=f"not known; choose one of {list(KL_KINDS)}")
        if not is_fused_choice(fused):
            raise ArgumentError("fused", fused, fix="use 'auto', True or False")
        estimator_handler(estimator)  # an unknown name fails here
        super().__init__(num_particles=int(num_particles))
        self.kl, self.estimator, self.fused, self.validate = kl, estimator, fused, bool(validate)
        # (model, guide, fused step or None, the traced path's estimator handler, its learned prior scales)
        self._prepared: Optional[tuple] = None

    def _prepare(self, model: nn.Module, guide: nn.Module, args) -> Tuple[Optional[FusedMeanField], Any,
                                                                         Optional[EmpiricalBayes]]:
        if self._prepared is not None and self._prepared[0] is model and self._prepared[1] is guide:
            return self._prepared[2:]
        if getattr(guide, "prototype_trace", True) is None:  # an autoguide not run yet: its parameters are made now
            initialize_guide(guide, *args)
        reason = unfusable_reason(model, guide) if self.fused is not False else "fused=False"
        if self.fused is True and reason is not None:
            raise ValueError(f"fused=True: the fused mean-field step cannot train this pair: {reason}; "
                             "use fused='auto' or False")
        step = FusedMeanField(model, guide, kl=self.kl, estimator=self.estimator) if reason is None else None
        learned = handler = None
        if step is None:
            handler = estimator_handler(self.estimator)
            learned = EmpiricalBayes.of(model)
            if learned is not None and not is_mean_field(guide):
                raise ValueError(f"learned prior scales (learn_scale=True) are set from a mean-field Normal guide, not "
                                 f"a {type(guide).__name__}: use guide=auto_normal, or prior.learn_scale=false")
        self._prepared = (model, guide, step, handler, learned)
        return step, handler, learned

    def is_fused(self, model: nn.Module, guide: nn.Module, *args) -> bool:
        """Whether the terms of this pair come from the fused mean-field step (``args``: a batch, where the guide has
        not been run yet)."""
        return self._prepare(model, guide, args)[0] is not None

    def terms(self, model: nn.Module, guide: nn.Module, x: torch.Tensor, y: Optional[torch.Tensor] = None,
              rows: Optional[Tuple[int, int]] = None) -> ElboTerms:
        """NLL, KL (per site) and the hyperprior's term of the minibatch ``(x, y)``, averaged over the particles.

        :param rows: ``(first row, rows of the whole minibatch)`` where ``(x, y)`` is this process's part of a
            minibatch (:func:`~pyro_bnn.training.distributed.shard_rows`), so that per-example noise is drawn for the whole
            minibatch.
        """
        step, handler, learned = self._prepare(model, guide, (x, y))
        if step is not None:
            return step(x, y, num_particles=self.num_particles, rows=rows)
        hyperprior = learned.update(guide) if learned is not None else None
        with handler.for_rows(rows):
            terms = elbo_terms(model, guide, x, y, kl=self.kl, num_particles=self.num_particles)
        return dataclasses.replace(terms, hyperprior=hyperprior)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The minibatch estimate of -ELBO (differentiable)."""
        return self.terms(model, guide, *args, **kwargs).loss

    def loss(self, model, guide, *args, **kwargs) -> float:
        """The minibatch estimate of -ELBO, as a number."""
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def parameters(self, model: nn.Module, guide: nn.Module, *args) -> List[nn.Parameter]:
        """What an optimizer of this objective trains: the fused step's flat guide parameters and the model's, or the
        guide's and the model's (``args``: a batch, where the guide has not been run yet)."""
        step = self._prepare(model, guide, args)[0]
        if step is None:
            return parameters_of(guide, model)
        return parameters_of(model) + list(step.flat())

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """The -ELBO estimate, its gradients accumulated into the guide's and the model's own parameters (what
        :class:`pyro.infer.SVI` calls)."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        step = self._prepared[2]
        if step is not None:
            step.to_site_gradients()
            if am_i_wrapped():  # show the guide's parameters to the handlers around this call (SVI collects the
                poutine.block(guide, hide_types=["sample"])(*args, **kwargs)  # ones it steps from their messages)
        return float(loss.detach())


__all__ = ["MeanFieldELBO"]
