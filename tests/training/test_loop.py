import math

import pyro
import pytest
import torch

from helpers import small_mlp
from pyro_bnn import KLWeight, MeanFieldELBO, Schedule, evaluate, fit, make_loader
from pyro_bnn.guides import auto_delta, auto_lowrank, auto_normal
from pyro_bnn.objectives.elbo import ELBO_KL

GUIDES = {"auto_normal": auto_normal, "auto_delta": auto_delta, "auto_lowrank": auto_lowrank}


def train_small(small_digits, guide_name="auto_normal", elbo="mean_field", epochs=15, seed=0, **guide_options):
    pyro.set_rng_seed(seed)
    train, test = small_digits
    model = small_mlp(num_data=len(train))
    options = {"init_scale": 0.01} if guide_name != "auto_delta" else {}
    guide = GUIDES[guide_name](model, **options, **guide_options)
    history = fit(model, guide, make_loader(train, 50, shuffle=True, seed=seed), Schedule(epochs=epochs, lr=0.01),
                  MeanFieldELBO(validate=True, kl=ELBO_KL[elbo]))
    return model, guide, history


@pytest.mark.parametrize("elbo", ["mean_field", "trace"])
@pytest.mark.parametrize("guide_name", sorted(GUIDES))
def test_every_guide_trains_with_both_elbos(small_digits, guide_name, elbo):
    model, guide, history = train_small(small_digits, guide_name, elbo)
    assert len(history) == 15 and all(math.isfinite(r["loss"]) for r in history)
    assert history[-1]["nll"] < 0.5 * history[0]["nll"]  # it learned the data
    pyro.set_rng_seed(0)
    metrics = evaluate(model, guide, make_loader(small_digits[1], 100), num_samples=10)
    assert metrics["accuracy"] > 0.6


def test_same_seed_same_numbers(small_digits):
    runs = []
    for _ in range(2):
        model, guide, history = train_small(small_digits, epochs=3, seed=7)
        pyro.set_rng_seed(7)
        runs.append((history, evaluate(model, guide, make_loader(small_digits[1], 100), num_samples=5)))
    (h1, m1), (h2, m2) = runs
    assert [{k: v for k, v in r.items() if k != "time_s"} for r in h1] == \
           [{k: v for k, v in r.items() if k != "time_s"} for r in h2]
    assert m1 == m2
    _, _, h3 = train_small(small_digits, epochs=3, seed=8)
    assert h3[-1]["loss"] != h1[-1]["loss"]


def test_two_models_in_one_process_never_share_parameters(small_digits):
    model_a, guide_a, _ = train_small(small_digits, epochs=1)
    before = {k: v.clone() for k, v in guide_a.state_dict().items()}
    model_b, guide_b, _ = train_small(small_digits, epochs=2, seed=1)  # same site names
    assert all(torch.equal(before[k], v) for k, v in guide_a.state_dict().items())
    assert not any(p is q for p in guide_a.parameters() for q in guide_b.parameters())
    assert len(pyro.get_param_store()) == 0


def test_kl_weight_schedules():
    assert KLWeight().is_exact_elbo(1) and KLWeight()(3, 0, 10) == 1.0
    warm = KLWeight(1.0, warmup_epochs=4)
    assert [warm.epoch_weight(e) for e in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert warm.is_exact_elbo(8) and not warm.is_exact_elbo(7) and not KLWeight(0.5).is_exact_elbo(8)  # half the run at most
    blundell = KLWeight(schedule="blundell")
    weights = [blundell(0, i, 6) for i in range(6)]
    assert sum(weights) == pytest.approx(6.0)  # the epoch still carries the whole KL once per step on average
    assert weights[0] == pytest.approx(6 * 2**5 / (2**6 - 1)) and weights == sorted(weights, reverse=True)
    assert sum(blundell(0, i, 2000) for i in range(2000)) == pytest.approx(2000.0)  # no overflow
    with pytest.raises(ValueError, match="kl_schedule"):
        KLWeight(schedule="cosine")


def test_a_warm_up_by_share_scales_with_the_run_and_a_share_of_at_most_half_keeps_the_exact_elbo():
    share = KLWeight(warmup_fraction=0.3)
    assert [share.warmup_of(e) for e in (1, 2, 5, 30, 60)] == [1, 1, 2, 9, 18]  # rounded, at least 1
    assert share.over(30).warmup_epochs == 9 and share.over(30).epoch_weight(8) == 1.0
    half = KLWeight(warmup_fraction=0.5)
    for epochs in (1, 2, 3, 4, 7, 8, 2000):
        assert half.is_exact_elbo(epochs) and 2 * half.warmup_of(epochs) <= max(epochs, 2), epochs
    assert [half.warmup_of(e) for e in (3, 7, 8)] == [1, 3, 4]
    assert KLWeight(warmup_epochs=1).is_exact_elbo(1)  # one epoch of warm-up: the whole weight from the start
    assert KLWeight(warmup_fraction=0.3).is_exact_elbo(1) and not KLWeight(0.5, warmup_fraction=0.3).is_exact_elbo(10)
    with pytest.raises(ValueError, match="over\\(epochs\\)"):
        share.epoch_weight(0)  # the run's length decides the weights: resolved by over(epochs)
    with pytest.raises(ValueError, match="kl_warmup_fraction=0.8: use a share of the run's epochs from 0 to 0.5"):
        KLWeight(warmup_fraction=0.8)
    with pytest.raises(ValueError, match="kl_warmup_epochs=2 sets the KL warm-up too"):
        KLWeight(warmup_epochs=2, warmup_fraction=0.3)
    # a run of one epoch with a share: every step has the whole weight, and it says so (no "warm-up", no "tempered")
    assert KLWeight(1.0, warmup_fraction=0.3).describe(1) == "kl_weight=1.0"
    assert KLWeight(1.0, warmup_fraction=0.3).describe(10) == "kl_weight=1.0, a KL warm-up over 3 of 10 epochs"
    with pytest.raises(ValueError, match="kl_warmup_epochs=5: a warm-up longer than the run's 4 epochs never reaches"):
        Schedule(epochs=4, kl_weight=KLWeight(warmup_epochs=5))  # refused before any step


def test_a_non_finite_loss_stops_with_the_epoch_and_the_term(small_digits):
    model = small_mlp()
    guide = GUIDES["auto_normal"](model, init_scale=0.01)
    x, y = small_digits[0].tensors
    huge = torch.utils.data.TensorDataset(x[:50] * 1e38 + 1e38, y[:50])  # finite inputs, outputs overflow
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 1: the NLL is not finite"):
        fit(model, guide, make_loader(huge, 50), Schedule(epochs=1))


def test_fit_rejects_bad_arguments(small_digits):
    model = small_mlp()
    guide = GUIDES["auto_normal"](model)
    loader = make_loader(small_digits[0], 50)
    with pytest.raises(ValueError, match="kl='tracemeanfield' is not known"):
        fit(model, guide, loader, objective=MeanFieldELBO(kl="tracemeanfield"))
    with pytest.raises(ValueError, match="epochs=0"):
        fit(model, guide, loader, Schedule(epochs=0))
    with pytest.raises(ValueError, match="lr=-1"):
        fit(model, guide, loader, Schedule(lr=-1.0))
