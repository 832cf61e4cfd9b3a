"""GPU paths: run where CUDA is available, skipped elsewhere (never faked)."""

import pyro
import pytest
import torch

from helpers import small_mlp
from pyro_bnn import BayesianCNN, Hooks, NormalPrior, Schedule, auto_normal, evaluate, fit, make_loader

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_training_and_evaluation_run_on_cuda(small_digits):
    train, test = small_digits
    model = BayesianCNN((1, 8, 8), 10, channels=(8,), hidden=(32,), prior=NormalPrior(1.0),
                        num_data=len(train)).to("cuda")
    guide = auto_normal(model, init_scale=1e-3)
    history = fit(model, guide, make_loader(train, 50, shuffle=True), Schedule(epochs=20, lr=1e-2))
    assert all(p.is_cuda for p in guide.parameters())
    assert history[-1]["nll"] < 0.5 * history[0]["nll"]
    assert evaluate(model, guide, make_loader(test, 100), num_samples=10)["accuracy"] > 0.7


def test_cuda_and_cpu_compute_the_same_terms(small_digits):
    from pyro import poutine

    from pyro_bnn import elbo_terms, initialize_guide

    x, y = small_digits[0].tensors
    model = small_mlp()
    guide = auto_normal(model, init_scale=0.05)
    initialize_guide(guide, x, y)
    fixed = poutine.trace(guide).get_trace(x, y)
    cpu = elbo_terms(model, poutine.replay(guide, trace=fixed), x, y)
    model.cuda(), guide.cuda()
    for site in fixed.nodes.values():
        if site["type"] == "sample" and torch.is_tensor(site.get("value")):
            site["value"] = site["value"].cuda()
    gpu = elbo_terms(model, poutine.replay(guide, trace=fixed), x.cuda(), y.cuda())
    torch.testing.assert_close(gpu.nll.cpu(), cpu.nll, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(gpu.kl.cpu(), cpu.kl, rtol=1e-4, atol=1e-3)


def test_resume_on_cuda_gives_the_uninterrupted_result(small_digits):
    from pyro_bnn.training.loop import TrainingInterrupted

    def run(hooks=None, state=None):
        pyro.set_rng_seed(0)
        model = small_mlp(num_data=len(small_digits[0])).to("cuda")
        guide = auto_normal(model, init_scale=1e-2)
        return fit(model, guide, make_loader(small_digits[0], 64, shuffle=True), Schedule(epochs=3, lr=1e-2),
                   hooks=hooks, state=state)

    expected = run()
    states, calls = [], iter(range(1000))
    with pytest.raises(TrainingInterrupted):
        run(Hooks(on_checkpoint=states.append, should_stop=lambda: next(calls) == 7))
    torch.cuda.manual_seed(99)
    resumed = run(state=states[-1])
    assert [{k: v for k, v in r.items() if k != "time_s"} for r in resumed] == \
           [{k: v for k, v in r.items() if k != "time_s"} for r in expected]


def test_the_fused_step_equals_pyros_elbo_on_cuda(small_digits):
    from pyro.infer import TraceMeanField_ELBO

    from helpers import FixedNoise, fused_noise, spread_guide
    from pyro_bnn import MeanFieldELBO

    x, y = (t[:64].cuda() for t in small_digits[0].tensors)
    model = small_mlp(num_data=1437).cuda()
    guide = spread_guide(model, x, y)
    pyro.set_rng_seed(5)
    terms = MeanFieldELBO(fused=True).terms(model, guide, x, y)
    assert terms.loss.is_cuda
    expected = TraceMeanField_ELBO().differentiable_loss(model, FixedNoise(fused_noise(guide, 5))(guide), x, y)
    torch.testing.assert_close(terms.loss, expected, rtol=1e-4, atol=1e-3)
