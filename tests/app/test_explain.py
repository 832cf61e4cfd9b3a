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
    assert "conv kernel" not in text and "hyperprior" not in text  # an MLP with a fixed prior


def test_a_learned_priors_hyperprior_term_is_part_of_the_loss_shown(small_digits):
    from pyro_bnn import BayesianMLP, NormalPrior, initialize_guide
    from pyro_bnn.objectives.empirical_bayes import EmpiricalBayes

    train, _ = small_digits
    x, y = train.tensors
    model = BayesianMLP((1, 8, 8), 10, hidden=(8,), num_data=len(x),
                        prior=NormalPrior(1.0, learn_scale=True, hyperprior_alpha=1.0))
    guide = initialize_guide(auto_normal(model), x, y)
    hyperprior = float(EmpiricalBayes(model).update(guide))
    b = kl_breakdown(model, guide, x, y, mc_samples=10, nll_samples=2)
    assert b.hyperprior == pytest.approx(hyperprior, rel=1e-5) and b.hyperprior != 0
    text = format_breakdown(b, batch_size=100)
    total = next(line for line in text.splitlines() if line.startswith("-ELBO = NLL + KL + hyperprior"))
    assert f"{b.nll + b.kl + b.hyperprior:15.2f}" in total
    assert f"{'hyperprior':22} {b.hyperprior:15.2f}" in text


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
