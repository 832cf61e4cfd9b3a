"""Partially Bayesian networks: ``bayesian=`` chooses the layers with a prior; the others are point estimates
trained in the same step (maximum likelihood), on the fused path and Pyro's traces, saved and loaded alike."""

import pyro
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO
from torch import nn
from torch.utils.data import TensorDataset

from helpers import train_in_process
from pyro_bnn import (
    BayesianCNN,
    BayesianMLP,
    MeanFieldELBO,
    MopedPrior,
    NormalPrior,
    Schedule,
    auto_normal,
    elbo_terms,
    fit,
    initialize_guide,
    load_posterior,
    make_loader,
    pretrained_weights,
    save_posterior,
    to_bayesian,
)
from pyro_bnn.model.priors import normal_params, site_prior


def sites(model):
    return sorted(name for name, _ in pyro.poutine.trace(model).get_trace(torch.zeros(2, *model.in_shape))
                  .iter_stochastic_nodes() if name not in ("obs", "data"))


class Blocks(nn.Module):
    """A user's network with named blocks: a feature block of two layers, then a head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.features(x))


@pytest.mark.parametrize("bayesian, expected", [
    ("all", ["features.0", "features.2", "fc"]),
    ("last", ["fc"]),
    (["fc"], ["fc"]),
    (["features"], ["features.0", "features.2"]),  # a block: every Linear/Conv layer in it
    (["net.features.2", "fc"], ["features.2", "fc"]),  # site-style names too
    (lambda name, layer: layer.out_features == 8, ["features.0", "features.2"]),
], ids=["all", "last", "names", "block", "prefixed", "predicate"])
def test_each_form_of_bayesian_chooses_its_layers(bayesian, expected):
    model = to_bayesian(Blocks(), (6,), bayesian=bayesian)
    assert sites(model) == sorted(f"net.{layer}.{p}" for layer in expected for p in ("bias", "weight"))
    points = {name for name, _ in model.point_estimate_layers()}
    assert points == {f"net.{layer}" for layer in ("features.0", "features.2", "fc")} - {f"net.{e}" for e in expected}
    assert model.num_point_estimates() == sum(p.numel() for p in model.parameters())


def test_the_mlp_and_the_cnn_take_bayesian_too():
    assert sites(BayesianMLP(4, 3, hidden=(5, 5), bayesian="last")) == ["net.5.bias", "net.5.weight"]
    cnn = BayesianCNN((1, 8, 8), 10, channels=(4,), hidden=(8,), bayesian=["net.0"])
    assert sites(cnn) == ["net.0.bias", "net.0.weight"]


def data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g))


@pytest.mark.parametrize("fused", ["auto", False], ids=["fused", "traces"])
def test_point_estimates_train_in_the_same_step_and_the_kl_is_the_bayesian_layers_only(fused):
    pyro.set_rng_seed(0)
    model = to_bayesian(Blocks(), (6,), prior=NormalPrior(1.0), num_data=64, bayesian="last")
    guide = auto_normal(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    history = fit(model, guide, make_loader(data(), 16, shuffle=True), Schedule(epochs=3), MeanFieldELBO(fused=fused))
    assert [k for k in history[-1] if k.startswith("kl.")] == ["kl.net.fc"]
    assert all(not torch.equal(p, before[name]) for name, p in model.named_parameters())  # all trained
    x, y = data().tensors
    terms = elbo_terms(model, guide, x, y)  # closed-form KL over the Bayesian layer's weights only
    loc, scale = (t.detach() for t in guide.loc_and_scale("net.fc.weight"))
    loc_b, scale_b = (t.detach() for t in guide.loc_and_scale("net.fc.bias"))
    closed = sum(float((s.log().neg() + (s ** 2 + m ** 2) / 2 - 0.5).sum()) for m, s in ((loc, scale), (loc_b, scale_b)))
    assert float(terms.kl.detach()) == pytest.approx(closed, rel=1e-5)


def test_pyro_svi_trace_elbo_and_predictive_accept_a_partially_bayesian_pair():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = BayesianMLP(6, 3, hidden=(8,), num_data=64, bayesian="last")
    guide = auto_normal(model)
    x, y = data().tensors
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    first = model.net[1].weight.detach().clone()
    losses = [svi.step(x, y) for _ in range(5)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert not torch.equal(model.net[1].weight.detach(), first)  # the point estimates trained by Pyro's SVI
    out = Predictive(model, guide=guide, num_samples=4, return_sites=["_RETURN"])(x)["_RETURN"]
    assert out.shape == (4, 64, 3) and out.std(0).sum() > 0  # the Bayesian last layer varies across draws


def test_a_partially_bayesian_posterior_is_saved_and_loaded_with_its_point_estimates(tmp_path):
    model = BayesianMLP(6, 3, hidden=(8,), num_data=64, bayesian="last")
    guide = auto_normal(model)
    fit(model, guide, make_loader(data(), 16), Schedule(epochs=2))
    save_posterior(tmp_path / "posterior.pt", model, guide, {"in_shape": [6], "task": "classification"})
    again = BayesianMLP(6, 3, hidden=(8,), num_data=64, bayesian="last")
    other_guide = auto_normal(again)
    load_posterior(tmp_path / "posterior.pt", again, other_guide)
    assert torch.equal(again.net[1].weight, model.net[1].weight)
    x = data().tensors[0]
    pyro.set_rng_seed(1)
    a = Predictive(model, guide=guide, num_samples=3, return_sites=["_RETURN"])(x)["_RETURN"]
    pyro.set_rng_seed(1)
    b = Predictive(again, guide=other_guide, num_samples=3, return_sites=["_RETURN"])(x)["_RETURN"]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="does not match the model and guide"):
        full = BayesianMLP(6, 3, hidden=(8,), num_data=64)
        load_posterior(tmp_path / "posterior.pt", full, auto_normal(full))


def test_a_bayesian_last_layer_starts_at_a_trained_network():
    net = Blocks()
    model = to_bayesian(net, (6,), bayesian="last")
    guide = initialize_guide(auto_normal(model, init_loc=pretrained_weights(net, model=model)), *data().tensors)
    torch.testing.assert_close(guide.loc_and_scale("net.fc.weight")[0].detach(), net.fc.weight.detach())
    torch.testing.assert_close(model.net.features[0].weight.detach(), net.features[0].weight.detach())


def test_the_app_records_which_layers_are_bayesian(tmp_path):
    metrics = train_in_process(tmp_path / "run", "+experiment=debug", "model.bayesian=last")
    layers = metrics["layers"]
    assert layers["bayesian"] == "last" and layers["bayesian_layers"] == ["net.6"]
    assert layers["point_estimate_layers"] == ["net.0", "net.4"] and list(metrics["train"]["kl_layers"]) == ["net.6"]


def trained_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def test_a_moped_prior_is_centred_at_the_trained_weights_with_sds_proportional_to_them():
    net = trained_net()
    model = to_bayesian(net, (6,), prior=MopedPrior(pretrained_weights(net), delta=0.2), num_data=40,
                        bayesian="last")
    loc, scale = normal_params(site_prior(model, "net.2.weight"))
    torch.testing.assert_close(loc, net[2].weight.detach())
    torch.testing.assert_close(scale, (0.2 * net[2].weight.detach().abs()).clamp_min(1e-3))
    x, y = data().tensors
    guide = initialize_guide(auto_normal(model, init_loc=pretrained_weights(net, model=model)), x[:2], y[:2])
    trace = pyro.poutine.trace(pyro.poutine.replay(model, trace=pyro.poutine.trace(guide).get_trace(x, y))).get_trace(x, y)
    expected = torch.distributions.Normal(net[2].bias.detach(), (0.2 * net[2].bias.detach().abs()).clamp_min(1e-3))
    torch.testing.assert_close(trace.nodes["net.2.bias"]["fn"].log_prob(trace.nodes["net.2.bias"]["value"]),
                               expected.log_prob(trace.nodes["net.2.bias"]["value"]).sum())


def test_bayesian_fine_tuning_under_a_moped_prior_trains_on_pyros_traces_and_its_kl_is_the_closed_form():
    net = trained_net()
    model = to_bayesian(net, (6,), prior=MopedPrior(pretrained_weights(net)), num_data=40, bayesian="last")
    guide = auto_normal(model, init_scale=1e-3, init_loc=pretrained_weights(net, model=model))
    history = fit(model, guide, make_loader(data(), 20, shuffle=True), Schedule(epochs=3, lr=0.01))
    assert not MeanFieldELBO().is_fused(model, guide)  # a prior per weight: the fused step does not apply
    loc, scale = normal_params(site_prior(model, "net.2.weight"))
    q_loc = guide.locs.get_parameter("net.2.weight_unconstrained").detach()
    q_scale = guide.scales.get_parameter("net.2.weight_unconstrained").detach().exp()
    closed = torch.distributions.kl_divergence(torch.distributions.Normal(q_loc, q_scale),
                                               torch.distributions.Normal(loc, scale)).sum()
    terms = elbo_terms(model, guide, *data().tensors)
    torch.testing.assert_close(terms.kl_sites["net.2.weight"], closed, rtol=1e-4, atol=1e-4)
    assert history[-1]["kl"] > 0


def test_a_moped_prior_without_a_sites_trained_weight_is_refused():
    net = trained_net()
    weights = {k: v for k, v in pretrained_weights(net).items() if k != "net.2.bias"}
    with pytest.raises(ValueError, match="MopedPrior has no trained weight for the site net.2.bias"):
        to_bayesian(net, (6,), prior=MopedPrior(weights), num_data=40, bayesian="last")


@pytest.mark.parametrize("bayesian", ["all", "last"])
def test_pyros_svi_trains_every_point_estimate_of_a_network_with_batchnorm(bayesian):
    """BatchNorm's affine parameters (and any other parameter without a prior) are PyroParams: Pyro's own SVI
    collects and trains them (a plain nn.Parameter makes it fail under module_local_params)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model = to_bayesian(net, (6,), num_data=64, bayesian=bayesian)
    x, y = data().tensors
    guide = initialize_guide(auto_normal(model), x, y)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert "net.1.weight_unconstrained" in before and "net.1.bias_unconstrained" in before
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(3):
        svi.step(x, y)
    assert all(not torch.equal(before[name], p.detach()) for name, p in model.named_parameters())


def test_a_posterior_saved_with_plain_batchnorm_parameters_still_loads(tmp_path):
    """Files written before BatchNorm's parameters became PyroParams name them ``net.1.weight``: read as
    ``net.1.weight_unconstrained`` (real support: the same values)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model = to_bayesian(net, (6,), num_data=64)
    x, y = data().tensors
    guide = initialize_guide(auto_normal(model), x, y)
    spec = {"name": "blocks", "in_shape": [6], "num_outputs": 3, "task": "classification", "num_data": 64,
            "target_mean": 0.0, "target_std": 1.0}
    save_posterior(tmp_path / "posterior.pt", model, guide, spec)
    blob = torch.load(tmp_path / "posterior.pt", weights_only=False)
    blob["model_state"] = {k.replace("_unconstrained", "") if k.startswith("net.1.") else k: v
                           for k, v in blob["model_state"].items()}
    torch.save(blob, tmp_path / "old.pt")
    fresh = to_bayesian(nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)), (6,), num_data=64)
    load_posterior(tmp_path / "old.pt", fresh, auto_normal(fresh))
    torch.testing.assert_close(fresh.net[1].weight, model.net[1].weight, rtol=0, atol=0)
