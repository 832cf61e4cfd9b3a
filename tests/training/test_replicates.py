"""Replicates trained as one: each replicate's loss and gradients are Pyro's ELBO of its own pair given the same noise,
the replicates are independent, and each trained pair is an ordinary posterior."""

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.utils.data import TensorDataset

from helpers import FixedNoise, assert_close
from pyro_bnn import (
    BayesianCNN,
    BayesianMLP,
    Categorical,
    Gaussian,
    HeteroscedasticGaussian,
    Hooks,
    KLWeight,
    MeanFieldELBO,
    NormalPrior,
    Schedule,
    auto_normal,
    fit,
    initialize_guide,
    load_posterior,
    save_posterior,
)
from pyro_bnn.objectives.estimators import DenseLocalReparameterization, Flipout, LocalReparameterization
from pyro_bnn.training.loop import TrainingInterrupted
from pyro_bnn.training.replicate_data import StackedBatches, replicate_draw
from pyro_bnn.training.replicate_fit import ReplicatesFailed, fit_replicates
from pyro_bnn.training.replicates import Replicates, build_replicates

R, B, N = 3, 16, 96


class FixedLocalNoise(LocalReparameterization):
    """Local reparameterization drawing the given standard Normal noise, layer after layer."""

    def __init__(self, noises):
        super().__init__()
        self.noises = list(noises)

    def _draw(self, mean, variance):
        return mean + variance.clamp_min(1e-30).sqrt() * self.noises.pop(0).view(mean.shape)


class FixedDenseLocalNoise(FixedLocalNoise, DenseLocalReparameterization):
    """Local reparameterization of the Linear layers drawing the given noise (the convolutions: the weight draw)."""


class FixedSigns(Flipout):
    """Flipout drawing the given signs, layer after layer (each layer's input signs, then its output signs)."""

    def __init__(self, signs):
        super().__init__()
        self.signs = list(signs)

    def _signs(self, batch, size, like):
        return self.signs.pop(0).view(batch, size).to(like)


class Recorded:
    """A standard Normal draw (and Flipout's signs) that keeps what it drew, in order."""

    def __init__(self, seed=3):
        self.generator, self.draws, self.sign_draws = torch.Generator().manual_seed(seed), [], []

    def __call__(self, shape):
        self.draws.append(torch.randn(shape, generator=self.generator))
        return self.draws[-1]

    def signs(self, shape):
        self.sign_draws.append(torch.randint(0, 2, shape, generator=self.generator) * 2 - 1)
        return self.sign_draws[-1]


#: The images of the CNN cases: (C, H, W).
IMAGE = (2, 5, 5)


def data(seed, task="regression", n=N, network="mlp"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *(IMAGE if network == "cnn" else (3,)), generator=g)
    first = x.reshape(n, -1)
    y = (first[:, 0] - 2 * first[:, 1] + 0.3 * torch.randn(n, generator=g) if task == "regression"
         else (first[:, 0] > 0).long())
    return x, y


def pair(seed, likelihood, scale=1.0, init_scale=0.05, learn_scale=False, alpha=0.0, task="regression",
         bayesian="all", network="mlp"):
    """A replicate: its own seed, prior scale, initial scale, data; its guide run once, its scales spread."""
    pyro.set_rng_seed(seed)
    outputs = {"categorical": 2, "heteroscedastic": 2}.get(likelihood, 1)
    lik = {"categorical": Categorical, "heteroscedastic": HeteroscedasticGaussian, "gaussian": Gaussian}[likelihood]()
    prior = NormalPrior(scale, learn_scale=learn_scale, hyperprior_alpha=alpha)
    if network == "cnn":  # conv (3 channels), activation, pooling, conv (4), activation, Flatten, dense 6, output
        model = BayesianCNN(IMAGE, outputs, channels=(3, 4), hidden=(6,), activation="gelu", likelihood=lik,
                            num_data=N, bayesian=bayesian, prior=prior)
    else:
        model = BayesianMLP((3,), outputs, hidden=(8,), likelihood=lik, num_data=N, bayesian=bayesian, prior=prior)
    guide = auto_normal(model, init_scale=init_scale)
    x, y = data(seed, task, network=network)
    initialize_guide(guide, x[:B], y[:B])
    with torch.no_grad():
        for p in guide.scales.parameters():
            p.add_(0.5 * torch.rand_like(p))
    return model, guide


CASES = {  # the replicates differ in seed (initial means, data), prior scale and initial scale
    "heteroscedastic, learned prior (the UCI preset)":
        dict(likelihood="heteroscedastic", learn_scale=True, alpha=1.0),
    "categorical": dict(likelihood="categorical", task="classification"),
    "gaussian, a learned noise sd per replicate": dict(likelihood="gaussian"),
    "partially Bayesian (the last layer), each replicate's own point-estimate layer":
        dict(likelihood="categorical", task="classification", bayesian="last"),
    "a CNN (convolutions side by side, pooling)": dict(likelihood="categorical", task="classification", network="cnn"),
    "a CNN, partially Bayesian (the last layer), each replicate's own point-estimate kernels":
        dict(likelihood="categorical", task="classification", network="cnn", bayesian="last"),
    "a CNN, heteroscedastic regression with learned prior scales":
        dict(likelihood="heteroscedastic", network="cnn", learn_scale=True, alpha=1.0),
}


def replicate_pairs(case):
    return [pair(10 + r, scale=0.5 + 0.5 * r, init_scale=0.02 * (r + 1), **CASES[case]) for r in range(R)]


def minibatches(case):
    task, network = CASES[case].get("task", "regression"), CASES[case].get("network", "mlp")
    batches = [data(10 + r, task, network=network) for r in range(R)]
    return torch.stack([x[:B] for x, _ in batches]), torch.stack([y[:B] for _, y in batches])


def flat_gradients(guide, names):
    locs, log_scales = guide.site_parameters(names)
    return torch.cat([p.grad.reshape(-1) for p in locs]), torch.cat([p.grad.reshape(-1) for p in log_scales])


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("estimator, kl", [("shared", "analytic"), ("local_reparameterization", "analytic"),
                                           ("shared", "mc"), ("local_reparameterization", "mc"),
                                           ("flipout", "analytic"), ("flipout", "mc"),
                                           ("dense_local_reparameterization", "analytic"),
                                           ("dense_local_reparameterization", "mc")])
def test_each_replicates_loss_and_gradients_are_pyros_elbo_of_its_own_pair_given_the_same_noise(case, estimator, kl):
    pairs = replicate_pairs(case)
    replicates = Replicates(pairs, kl=kl, estimator=estimator)
    x, y = minibatches(case)
    draw = Recorded()
    terms = replicates.terms(x, y, draw)
    terms.loss.sum().backward()
    replicates.write_back()  # each model's learned prior scales as the step set them: what Pyro's ELBO reads
    own_grads = [[p.grad.clone() for p in model.parameters()] for model, _ in pairs]  # a learned noise sd
    for model, _ in pairs:
        model.zero_grad(set_to_none=True)
    sizes = replicates.sizes
    for r, (model, guide) in enumerate(pairs):
        noises = [d[r] for d in draw.draws]
        handlers = []
        convolutional = CASES[case].get("network") == "cnn"
        shared_convs = convolutional and estimator == "dense_local_reparameterization"
        if kl == "mc" or estimator in ("shared", "flipout") or shared_convs:  # a weight draw: the guide's
            weights = noises.pop(0)
            guide = FixedNoise(dict(zip(replicates.names, weights.split(sizes))))(guide)
        if estimator == "flipout":
            handlers.append(FixedSigns([d[r] for d in draw.sign_draws]))
        elif shared_convs:
            handlers.append(FixedDenseLocalNoise(noises))
        elif estimator != "shared":
            handlers.append(FixedLocalNoise(noises))
        elbo = TraceMeanField_ELBO() if kl == "analytic" else Trace_ELBO()
        if handlers:
            with handlers[0]:
                expected = elbo.differentiable_loss(model, guide, x[r], y[r])
        else:
            expected = elbo.differentiable_loss(model, guide, x[r], y[r])
        hyperprior = terms.hyperprior[r] if terms.hyperprior is not None else 0.0
        assert_close(terms.loss[r] - hyperprior, expected, rtol=1e-5, atol=1e-4)
        expected.backward()
        loc_grad, scale_grad = flat_gradients(pairs[r][1], replicates.names)
        torch.testing.assert_close(replicates.loc.grad[r], loc_grad, rtol=1e-4, atol=1e-4 * float(loc_grad.abs().max()))
        torch.testing.assert_close(replicates.log_scale.grad[r], scale_grad, rtol=1e-4,
                                   atol=1e-4 * float(scale_grad.abs().max()))
        for p, own in zip(model.parameters(), own_grads[r]):  # a learned noise sd: its own gradient
            assert_close(own, p.grad, rtol=1e-4, atol=1e-5)
    point_layers = {"mlp": 2, "cnn": 6}[CASES[case].get("network", "mlp")]  # weights and biases
    own = {"gaussian": 1}.get(CASES[case]["likelihood"], 0) + (point_layers if CASES[case].get("bayesian") == "last"
                                                                else 0)
    assert sum(len(grads) for grads in own_grads) == R * own  # a learned noise sd; a point-estimate layer


def test_a_replicate_does_not_reach_the_others_gradients():
    pairs = replicate_pairs("categorical")
    replicates = Replicates(pairs, estimator="local_reparameterization")
    x, y = minibatches("categorical")
    replicates.terms(x, y).loss[1].backward()
    assert replicates.loc.grad[1].abs().sum() > 0
    assert replicates.loc.grad[[0, 2]].abs().sum() == 0 and replicates.log_scale.grad[[0, 2]].abs().sum() == 0


def test_a_non_finite_replicate_leaves_the_others_finite():
    pairs = replicate_pairs("heteroscedastic, learned prior (the UCI preset)")
    replicates = Replicates(pairs)
    with torch.no_grad():
        replicates.loc[2, 0] = float("nan")
    x, y = minibatches("heteroscedastic, learned prior (the UCI preset)")
    with pyro.validation_enabled(False):  # (validation would refuse the NaN mean before the loss)
        terms = replicates.terms(x, y)
        terms.loss.sum().backward()
    assert torch.isfinite(terms.loss[:2]).all() and not torch.isfinite(terms.loss[2])
    assert torch.isfinite(replicates.loc.grad[:2]).all()


@pytest.mark.parametrize("case", ["heteroscedastic, learned prior (the UCI preset)",
                                  "gaussian, a learned noise sd per replicate"])
def test_a_replicate_whose_loss_goes_bad_is_named_and_dropped_while_the_others_train_to_their_own_end(case):
    def fitted(rows, poison):
        pairs = [replicate_pairs(case)[r] for r in rows]
        replicates = Replicates(pairs)
        if poison is not None:
            with torch.no_grad():
                replicates.loc[poison, 0] = float("nan")
        batches = StackedBatches([TensorDataset(*data(10 + r)) for r in rows], B, seeds=[5 + r for r in rows])
        return pairs, lambda: fit_replicates(replicates, batches, Schedule(epochs=3, lr=0.01),
                                             seeds=[5 + r for r in rows])

    pairs, train = fitted([0, 1, 2], poison=1)
    with pytest.raises(ReplicatesFailed, match=r"^replicate 1: the loss became nan in epoch 1: the NLL is not finite; "
                                               r"lower the learning rate") as failure:
        train()
    assert list(failure.value.failed) == [1] and failure.value.histories[1] == []
    alone_pairs, alone = fitted([0, 2], poison=None)
    alone_histories = alone()
    for mine, theirs in zip([failure.value.histories[0], failure.value.histories[2]], alone_histories):
        assert_close([h["loss"] for h in mine], [h["loss"] for h in theirs], rtol=1e-5)
    for (_, guide), (_, theirs) in zip([pairs[0], pairs[2]], alone_pairs):  # written back: trained to the end
        for name in replicate_names(pairs):
            torch.testing.assert_close(guide.loc_and_scale(name)[0], theirs.loc_and_scale(name)[0])
    _, train_all = fitted([1], poison=0)
    with pytest.raises(ReplicatesFailed, match="replicate 0"):  # all failed: raised at once
        train_all()


def test_a_bad_loss_is_nan_inf_or_an_explosion_of_the_first_steps():
    from pyro_bnn.training.replicate_fit import _bad_loss

    row = {"loss": 5.0, "nll": 4.0, "kl": 1.0, "kl.net.1": 1.0}
    assert _bad_loss(row, first=3.0, epoch=0) is None
    assert "exploded to 5e+04 in epoch 2 (it was 3" in _bad_loss({**row, "loss": 5e4}, first=3.0, epoch=1)
    assert "the KL of layer(s) ['net.1'] is not finite" in _bad_loss({**row, "loss": float("inf"), "kl": float("inf"),
                                                                      "kl.net.1": float("inf")}, first=3.0, epoch=0)
    assert "the hyperprior's NLL of the learned prior scales is not finite" in _bad_loss(
        {**row, "loss": float("inf"), "hyperprior": float("inf")}, first=3.0, epoch=0)


class StopAt:
    """``should_stop`` true at the given (0-based) step count, with the checkpoints kept."""

    def __init__(self, at_step=None):
        self.at_step, self.calls, self.checkpoints = at_step, 0, []

    def should_stop(self):
        self.calls += 1
        return self.at_step is not None and self.calls > self.at_step

    def hooks(self):
        return Hooks(on_checkpoint=self.checkpoints.append, should_stop=self.should_stop)


RESUMED = "gaussian, a learned noise sd per replicate"  # Adam's state of each model's own parameter travels too


def batch_of(rows, estimator="local_reparameterization"):
    """Replicates ``rows`` of :data:`RESUMED` with their data, seeds and KL weights (one warms up)."""
    pairs = [replicate_pairs(RESUMED)[r] for r in rows]
    batches = StackedBatches([TensorDataset(*data(10 + r, n=N - 6)) for r in rows], B, seeds=[5 + r for r in rows])
    kl_weights = [[1.0, KLWeight(1.0, warmup_epochs=2), 0.5][r] for r in rows]
    return pairs, Replicates(pairs, estimator=estimator), batches, kl_weights


def fit_rows(rows, stop=None, states=None, estimator="local_reparameterization"):
    pairs, replicates, batches, kl_weights = batch_of(rows, estimator)
    schedule = Schedule(epochs=4, lr=0.02, lr_schedule="cosine")
    histories = fit_replicates(replicates, batches, schedule, kl_weights, [5 + r for r in rows],
                               hooks=stop.hooks() if stop is not None else None, states=states)
    return pairs, histories


def without_time(histories):
    return [[{k: v for k, v in record.items() if k != "time_s"} for record in history] for history in histories]


@pytest.mark.parametrize("estimator", ["shared", "local_reparameterization", "flipout"])
@pytest.mark.parametrize("stop_step", [0, 13, 18])  # before the first step; inside epoch 3; at an epoch's end (6 a epoch)
def test_a_batch_stopped_anywhere_resumes_from_its_replicates_checkpoints_to_the_uninterrupted_result(stop_step,
                                                                                                      estimator):
    pairs, histories = fit_rows([0, 1, 2], estimator=estimator)
    stop = StopAt(stop_step)
    with pytest.raises(TrainingInterrupted):
        fit_rows([0, 1, 2], stop, estimator=estimator)
    states = stop.checkpoints[-1]
    assert [state["replicates"] for state in states] == [3, 3, 3]
    resumed_pairs, resumed = fit_rows([0, 1, 2], states=states, estimator=estimator)
    assert without_time(resumed) == without_time(histories)  # every number of every epoch, bit for bit
    for (model, guide), (resumed_model, resumed_guide) in zip(pairs, resumed_pairs):
        for name in replicate_names(pairs):
            assert torch.equal(guide.loc_and_scale(name)[0], resumed_guide.loc_and_scale(name)[0])
            assert torch.equal(guide.loc_and_scale(name)[1], resumed_guide.loc_and_scale(name)[1])
        assert torch.equal(model.likelihood.scale, resumed_model.likelihood.scale)


def test_replicates_checkpoints_resume_in_another_batch_each_as_it_would_have_gone_on():
    """Replicates 2 and 0, checkpointed in a batch of three after epoch 1, resume as a batch of two (and 1 alone)."""
    pairs, histories = fit_rows([0, 1, 2])
    stop = StopAt()
    fit_rows([0, 1, 2], stop)
    after_epoch_1 = stop.checkpoints[0]
    assert [state["epoch"] for state in after_epoch_1] == [1, 1, 1]
    for rows in ([2, 0], [1]):
        resumed_pairs, resumed = fit_rows(rows, states=[after_epoch_1[r] for r in rows])
        for r, history, (_, guide) in zip(rows, resumed, resumed_pairs):
            for key in history[0]:
                if key != "time_s":
                    assert_close([h[key] for h in history], [h[key] for h in histories[r]], rtol=1e-5)
            for name in replicate_names(pairs):
                torch.testing.assert_close(guide.loc_and_scale(name)[0], pairs[r][1].loc_and_scale(name)[0])


def test_checkpoints_of_other_positions_or_of_no_batch_are_refused():
    stop = StopAt(8)
    with pytest.raises(TrainingInterrupted):
        fit_rows([0, 1], stop)
    at_epoch_1, inside_epoch_2 = stop.checkpoints[0], stop.checkpoints[-1]
    with pytest.raises(ValueError, match=r"the checkpoints stand at \[\(1, 0, False\), \(1, 2, True\)\] .*resume "
                                         "the others in their own batch"):
        fit_rows([0, 1], states=[at_epoch_1[0], inside_epoch_2[1]])
    with pytest.raises(ValueError, match=r"states\[1\] is not a replicate's checkpoint"):
        fit_rows([0, 1], states=[at_epoch_1[0], {"epoch": 1}])
    with pytest.raises(ValueError, match="1 checkpoints for 2 replicates"):
        fit_rows([0, 1], states=[at_epoch_1[0]])


@pytest.mark.parametrize("estimator", ["shared", "local_reparameterization", "flipout"])
def test_trained_together_each_replicate_takes_the_steps_it_takes_alone_and_saves_as_one_pair(tmp_path, estimator):
    """Three replicates (other data and order, seed, prior scale, initial scale, KL weight) fitted as one end where
    each ends fitted alone with its seed; a replicate's saved posterior loads into a single model, learned prior scales
    included."""
    case = "heteroscedastic, learned prior (the UCI preset)"
    schedule = Schedule(epochs=4, lr=0.02, lr_schedule="cosine")
    loaders = [loader_of(r) for r in range(R)]
    kl_weights, seeds = [1.0, KLWeight(1.0, warmup_epochs=2), 0.5], [7, 8, 9]
    pairs = replicate_pairs(case)
    histories = fit_replicates(build_replicates(pairs, loaders, estimator=estimator), loaders, schedule,
                               kl_weights, seeds)
    for r in range(R):
        model, guide = replicate_pairs(case)[r]
        pyro.set_rng_seed(seeds[r])
        alone = fit(model, guide, loader_of(r), Schedule(4, 0.02, "cosine", kl_weights[r]), MeanFieldELBO(estimator=estimator))
        assert [list(h) for h in histories[r]] == [list(h) for h in alone]  # the same record, column for column
        for key in alone[0]:
            if key != "time_s":
                assert_close([h[key] for h in histories[r]], [h[key] for h in alone], rtol=1e-4)
        for name in replicate_names(pairs):
            for ours, theirs in zip(pairs[r][1].loc_and_scale(name), guide.loc_and_scale(name)):
                torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(pairs[r][0].net[1].weight_prior_scale, model.net[1].weight_prior_scale)
    model, guide = pairs[1]
    save_posterior(tmp_path / "posterior.pt", model, guide, {"in_shape": [3], "task": "regression"})
    fresh_model, fresh_guide = pair(99, "heteroscedastic", scale=1.0, learn_scale=True, alpha=1.0)
    load_posterior(tmp_path / "posterior.pt", fresh_model, fresh_guide)
    for name in replicate_names(pairs):
        assert torch.equal(fresh_guide.loc_and_scale(name)[0], guide.loc_and_scale(name)[0])
    assert torch.equal(fresh_model.net[1].weight_prior_scale, model.net[1].weight_prior_scale)


@pytest.mark.parametrize("estimator", ["shared", "local_reparameterization"])
def test_partially_bayesian_replicates_each_take_the_steps_they_take_alone(estimator):
    case = "partially Bayesian (the last layer), each replicate's own point-estimate layer"
    loaders = [loader_of(r, "classification") for r in range(R)]
    pairs = replicate_pairs(case)
    histories = fit_replicates(build_replicates(pairs, loaders, estimator=estimator), loaders,
                               Schedule(epochs=3, lr=0.02), seeds=[7, 8, 9])
    for r in range(R):
        model, guide = replicate_pairs(case)[r]
        pyro.set_rng_seed(7 + r)
        alone = fit(model, guide, loader_of(r, "classification"), Schedule(epochs=3, lr=0.02),
                    MeanFieldELBO(estimator=estimator))
        assert_close([h["loss"] for h in histories[r]], [h["loss"] for h in alone], rtol=1e-4)
        for ours, theirs in zip(pairs[r][0].parameters(), model.parameters()):  # the point-estimate layer
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def loader_of(r, task="regression"):
    """Replicate ``r``'s batches: its data, in an order of its own (a list: unlike a DataLoader, which draws a seed
    from torch's random stream at every pass, it leaves the noise of a run alone as the seed set it)."""
    x, y = data(10 + r, task)
    order = torch.randperm(N, generator=torch.Generator().manual_seed(r))
    return [(x[order[i:i + B]], y[order[i:i + B]]) for i in range(0, N, B)]


def replicate_names(pairs):
    return [name for name, _ in pairs[0][1].prototype_trace.iter_stochastic_nodes()]


@pytest.mark.parametrize("change, message", [
    (lambda pairs: pairs.append(pair(5, "heteroscedastic")) or pairs, None),
    (lambda pairs: [pairs[0], pair(7, "categorical", task="classification")], "likelihood"),
])
def test_replicates_of_another_network_or_likelihood_are_refused_naming_the_replicate(change, message):
    pairs = [pair(1, "heteroscedastic")]
    if message is None:
        Replicates(change(pairs))
        return
    with pytest.raises(ValueError, match=rf"^replicate 1 has a .*{message}"):
        Replicates(change(pairs))


def test_a_wider_replicate_is_refused():
    pyro.set_rng_seed(0)
    wide = BayesianMLP((3,), 2, hidden=(9,), likelihood=HeteroscedasticGaussian(), num_data=N)
    guide = auto_normal(wide)
    initialize_guide(guide, *data(0, n=B))
    with pytest.raises(ValueError, match=r"^replicate 1 has the weights .*replicates share one network"):
        Replicates([pair(1, "heteroscedastic"), (wide, guide)])


def test_stacked_batches_give_each_replicate_its_own_data_in_an_order_of_its_own_seed():
    datasets = [TensorDataset(*data(10 + r)) for r in range(R)]
    batches = StackedBatches(datasets, 40, seeds=[1, 1, 2])
    assert len(batches) == 3 and batches.replicates == R
    epoch = list(batches)
    assert [tuple(x.shape) for x, _ in epoch] == [(R, 40, 3), (R, 40, 3), (R, 16, 3)]
    for r, dataset in enumerate(datasets):
        seen = torch.cat([x[r] for x, _ in epoch])
        assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, dataset.tensors[0].tolist()))  # each row once
        rows = {tuple(v.tolist()): i for i, v in enumerate(dataset.tensors[0])}
        assert all(torch.equal(y[r][i], dataset.tensors[1][rows[tuple(x[r][i].tolist())]])
                   for x, y in epoch for i in range(len(x[r])))  # inputs and targets stay paired
    positions = [[[tuple(v.tolist()) for v in datasets[r].tensors[0]].index(tuple(row.tolist()))
                   for x, _ in epoch for row in x[r]] for r in range(R)]
    assert positions[0] == positions[1] != positions[2]  # seeds 1 and 1: one permutation (of other data)
    again = list(StackedBatches(datasets, 40, seeds=[1, 1, 2]))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(epoch, again))  # the same seeds, the same order
    assert not torch.equal(epoch[0][0][2], list(StackedBatches(datasets, 40, seeds=[1, 1, 3]))[0][0][2])
    with pytest.raises(ValueError, match="must be of one size"):
        StackedBatches([datasets[0], TensorDataset(*data(0, n=50))], 40, seeds=[0, 1])


def test_a_replicate_draws_the_noise_of_its_seed_whatever_the_others_seeds():
    draws = replicate_draw([4, 9, 4])((3, 5))
    assert torch.equal(draws[0], torch.randn(5, generator=torch.Generator().manual_seed(4)))
    assert torch.equal(draws[1], torch.randn(5, generator=torch.Generator().manual_seed(9)))
    assert torch.equal(draws[2], draws[0])
    second = replicate_draw([4, 9, 4])
    second((3, 5))
    assert torch.equal(second((3, 2))[2], torch.randn(7, generator=torch.Generator().manual_seed(4))[5:])


def test_replicates_whose_likelihoods_differ_in_a_setting_each_get_their_own():
    pairs = replicate_pairs("heteroscedastic, learned prior (the UCI preset)")
    pairs[1][0].likelihood.min_scale = 0.5  # a floor of its own: its NLL is its own likelihood's
    replicates = Replicates(pairs)
    x, y = minibatches("heteroscedastic, learned prior (the UCI preset)")
    draw = Recorded()
    terms = replicates.terms(x, y, draw)
    replicates.write_back()
    for r, (model, guide) in enumerate(pairs):
        with FixedLocalNoise([d[r] for d in draw.draws]):
            expected = TraceMeanField_ELBO().differentiable_loss(model, guide, x[r], y[r])
        assert_close(terms.loss[r] - terms.hyperprior[r], expected, rtol=1e-5, atol=1e-4)
