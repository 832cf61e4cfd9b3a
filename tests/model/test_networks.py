
import pyro
import pytest
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from pyro_bnn import BayesianCNN, BayesianMLP, Gaussian, LaplacePrior, NormalPrior, StudentTPrior
from pyro_bnn.model.priors import fan_in


def latent_sites(model, x, y):
    trace = poutine.trace(model).get_trace(x, y)
    return {n: s for n, s in trace.nodes.items()
            if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)}, trace


def parameter_names(model):
    """Names of the weights and biases the network would have as a plain nn.Module."""
    return {f"net.{n}.{p}" for n, m in model.net.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
            for p in ("weight", "bias")}


@pytest.mark.parametrize("in_shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_every_weight_and_bias_is_a_sample_site_with_the_prior_scale(kind, in_shape):
    prior = NormalPrior(scale=0.7)
    if kind == "mlp":
        model = BayesianMLP(in_shape, 10, hidden=(20, 20), prior=prior, num_data=100)
    else:
        model = BayesianCNN(in_shape, 10, channels=(4, 8), hidden=(16,), prior=prior, num_data=100)
    assert list(model.parameters()) == []  # nothing left as a point estimate
    x, y = torch.randn(5, *in_shape), torch.randint(0, 10, (5,))
    sites, trace = latent_sites(model, x, y)
    assert set(sites) == parameter_names(model)
    assert len(sites) == (6 if kind == "mlp" else 8)
    for _name, site in sites.items():
        base = site["fn"].base_dist
        assert isinstance(base, pyro.distributions.Normal)
        assert torch.all(base.scale == 0.7) and torch.all(base.loc == 0.0)
        assert site["scale"] == 1.0  # global: outside the data plate, not scaled by N/B
        assert site["fn"].event_shape == site["value"].shape
    assert trace.nodes["obs"]["scale"] == pytest.approx(100 / 5)
    assert trace.nodes["_RETURN"]["value"].shape == (5, 10)


def test_layerwise_and_fan_in_scales():
    model = BayesianCNN((1, 8, 8), 10, channels=(4,), hidden=(16,),
                        prior=NormalPrior(scale=2.0, fan_in=True), num_data=10)
    sites, _ = latent_sites(model, torch.randn(2, 1, 8, 8), torch.tensor([0, 1]))
    conv, dense = model.net[0], model.net[4]
    assert fan_in(conv) == 1 * 3 * 3 and fan_in(dense) == 4 * 4 * 4
    assert torch.allclose(sites["net.0.weight"]["fn"].base_dist.scale, torch.tensor(2.0 / 3.0))
    assert torch.allclose(sites["net.0.bias"]["fn"].base_dist.scale, torch.tensor(2.0 / 3.0))
    assert torch.allclose(sites["net.4.weight"]["fn"].base_dist.scale, torch.tensor(2.0 / 8.0))

    model = BayesianMLP(4, 2, hidden=(3,), prior=NormalPrior(scale=1.0, layer_scales={"net.3": 0.1}), num_data=10)
    sites, _ = latent_sites(model, torch.randn(2, 4), torch.tensor([0, 1]))
    assert torch.all(sites["net.1.weight"]["fn"].base_dist.scale == 1.0)
    assert torch.allclose(sites["net.3.weight"]["fn"].base_dist.scale, torch.tensor(0.1))


@pytest.mark.parametrize("prior_cls, base_cls", [(LaplacePrior, pyro.distributions.Laplace),
                                                 (StudentTPrior, pyro.distributions.StudentT)])
def test_other_families(prior_cls, base_cls):
    model = BayesianMLP(4, 2, hidden=(3,), prior=prior_cls(scale=0.5), num_data=10)
    sites, _ = latent_sites(model, torch.randn(2, 4), torch.tensor([0, 1]))
    assert all(isinstance(s["fn"].base_dist, base_cls) for s in sites.values())


def test_gaussian_likelihood_learns_a_noise_scale():
    model = BayesianMLP(1, 1, hidden=(8,), likelihood=Gaussian(scale=0.5), num_data=10)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["likelihood.scale_unconstrained"]
    trace = poutine.trace(model).get_trace(torch.randn(3, 1), torch.randn(3))
    assert torch.allclose(trace.nodes["obs"]["fn"].scale, torch.tensor(0.5))


def test_bad_inputs_get_one_clear_error():
    with pytest.raises(ValueError, match="scale=0: use a finite number > 0"):
        NormalPrior(scale=0)
    with pytest.raises(ValueError, match="use a BayesianMLP for tabular data"):
        BayesianCNN((64,), 10)
    with pytest.raises(ValueError, match="unknown layers"):
        BayesianMLP(4, 2, hidden=(3,), prior=NormalPrior(layer_scales={"net.9": 1.0}))
    model = BayesianCNN((1, 8, 8), 10, channels=(4,), hidden=())
    with pytest.raises(ValueError, match=r"takes inputs of shape \(batch, 1, 8, 8\)"):
        model(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="activation"):
        BayesianMLP(4, 2, activation="nope")


def test_a_changed_prior_buffer_changes_the_prior_of_the_next_trace():
    """Prior distributions are built once and reused, until a buffer is changed or replaced."""
    model = BayesianMLP(4, 3, hidden=(5,), prior=NormalPrior(1.0))
    x = torch.randn(2, 4)

    def prior(x):
        return poutine.trace(model).get_trace(x).nodes["net.1.weight"]["fn"]

    first = prior(x)
    assert prior(x) is first  # reused
    model.net[1].weight_prior_scale.fill_(2.0)  # changed in place
    assert prior(x) is not first and float(prior(x).base_dist.scale.max()) == 2.0
    model.double()  # buffers replaced
    assert prior(x.double()).base_dist.scale.dtype == torch.float64
