import pytest

from helpers import cli, small_mlp, train_in_process
from pyro_bnn import Schedule, auto_normal, fit, make_loader
from pyro_bnn.app.explain import explain_run, format_breakdown, kl_breakdown


def test_breakdown_columns_agree_and_the_units_are_consistent(small_digits):
    train, _ = small_digits
    model = small_mlp(num_data=len(train))
    guide = auto_normal(model, init_scale=1e-2)
    fit(model, guide, make_loader(train, 100), Schedule(epochs=2, lr=1e-2))
    b = kl_breakdown(model, guide, *train.tensors, mc_samples=2000, nll_samples=10)
    assert [s.site for s in b.sites] == ["net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias"]
    for s in b.sites:
        assert s.formula == pytest.approx(s.closed_form, rel=1e-5)
        assert abs(s.monte_carlo - s.closed_form) < 5 * s.mc_stderr + 1e-6
    text = format_breakdown(b, batch_size=100)
    assert f"{b.kl / 300:.4f}" in text and f"{(b.nll + b.kl) / 300:.4f}" in text


def test_explain_command_prints_the_breakdown():
    proc = cli("pyro_bnn.app.explain", "--epochs", "1", "--mc-samples", "50")
    for expected in ["net.0.weight   Conv2d", "net.4.weight   Linear", "-ELBO = NLL + KL", "KL / N", "M = N/B"]:
        assert expected in proc.stdout


def test_a_saved_run_is_explained_on_the_data_it_was_trained_on(tmp_path):
    metrics = train_in_process(tmp_path, "+experiment=debug", "data.holdout_classes=[8,9]", "data.ood=heldout",
                               "data.subset=500", "data.batch_size=50")
    breakdown, health, batch_size = explain_run(tmp_path, mc_samples=20)
    assert breakdown.num_data == metrics["train"]["num_data"] == 500 and batch_size == 50
    assert set(health) == set(metrics["posterior_health"])
