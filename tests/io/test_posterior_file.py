"""Saved posteriors: what is saved comes back bit for bit, into a pair built as the saved one was."""

import pyro
import pytest
import torch

from helpers import small_mlp, spread_guide
from pyro_bnn import auto_normal, load_posterior, save_posterior
from pyro_bnn.io.posterior import read_posterior

SPEC = {"name": "digits", "in_shape": [1, 8, 8], "num_outputs": 10, "task": "classification", "num_data": 300,
        "target_mean": 0.0, "target_std": 1.0}


def pair():
    x, y = torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    model = small_mlp()
    return model, spread_guide(model, x, y)


def test_a_saved_posterior_comes_back_bit_for_bit(tmp_path):
    pyro.set_rng_seed(0)
    model, guide = pair()
    save_posterior(tmp_path / "posterior.pt", model, guide, SPEC, {"seed": 3})
    fresh_model = small_mlp()
    fresh_guide = auto_normal(fresh_model)
    blob = load_posterior(tmp_path / "posterior.pt", fresh_model, fresh_guide)
    assert blob["config"] == {"seed": 3} and blob["data"] == SPEC
    saved, loaded = guide.state_dict(), fresh_guide.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_saving_is_atomic_and_leaves_no_temporary_file(tmp_path):
    model, guide = pair()
    save_posterior(tmp_path / "posterior.pt", model, guide, SPEC)
    save_posterior(tmp_path / "posterior.pt", model, guide, SPEC)  # replaces it
    assert [p.name for p in tmp_path.iterdir()] == ["posterior.pt"]
    assert read_posterior(tmp_path / "posterior.pt")["data"] == SPEC


def test_a_guide_that_never_ran_is_not_saved(tmp_path):
    model = small_mlp()
    with pytest.raises(ValueError, match="initialize_guide"):
        save_posterior(tmp_path / "posterior.pt", model, auto_normal(model), SPEC)
    assert not (tmp_path / "posterior.pt").exists()


def test_a_run_saved_before_the_training_core_redesign_loads_and_evaluates_to_its_metrics(tmp_path):
    """``tests/fixtures/run_7f584d1``: the posterior.pt of ``+experiment=debug`` written by 7f584d1 (before the layout at
    the seams, the guide's flat parameters and the configs that instantiate); its tensors load as written, its config
    through :func:`~pyro_bnn.app.build.migrate_config`."""
    import json
    import shutil

    from helpers import ROOT
    from pyro_bnn.app.evaluate import evaluate_run

    saved = ROOT / "tests" / "fixtures" / "run_7f584d1"
    run_dir = tmp_path / "run"
    shutil.copytree(saved, run_dir)
    metrics = evaluate_run(run_dir)
    assert metrics == pytest.approx(json.loads((saved / "metrics.json").read_text())["test"], rel=1e-6)


def test_a_config_saved_before_the_options_named_their_targets_is_migrated():
    from helpers import ROOT
    from pyro_bnn.app.build import migrate_config
    from pyro_bnn.io.posterior import read_posterior

    blob = read_posterior(ROOT / "tests" / "fixtures" / "run_7f584d1" / "posterior.pt")
    old = blob["config"]
    assert old["prior"]["family"] == "normal" and old["guide"]["name"] == "auto_normal"  # the old format
    new = migrate_config(old, blob["data"]["task"])
    assert new["model"] == {"_target_": "pyro_bnn.model.networks.BayesianCNN", "channels": [4], "kernel_size": 3,
                            "hidden": [16], "activation": "gelu", "bayesian": "all"}
    assert new["prior"] == {"_target_": "pyro_bnn.model.priors.NormalPrior", "scale": 1.0, "loc": 0.0, "fan_in": False,
                            "layer_scales": {}, "learn_scale": False, "hyperprior_alpha": 0.0}
    assert new["guide"] == {"_target_": "pyro_bnn.guides.auto_normal", "init_scale": 0.001, "init_loc": "pytorch"}
    assert new["likelihood"] == {}  # classification: the data's own
    assert migrate_config(new, "classification") == new  # today's format comes back unchanged
    regression = migrate_config({**old, "model": {**old["model"], "name": "mlp", "likelihood": "heteroscedastic",
                                                  "noise_floor": 0.05}}, "regression")
    assert regression["likelihood"] == {"_target_": "pyro_bnn.model.likelihoods.HeteroscedasticGaussian",
                                        "min_scale": 0.05}


def test_a_network_with_an_embedding_saves_and_loads(tmp_path):
    """Its inputs are indices: the pair is rebuilt on integer inputs, not float zeros."""
    from torch import nn
    from torch.utils.data import TensorDataset

    from pyro_bnn import Schedule, fit, make_loader, to_bayesian

    def model():
        with pytest.warns(UserWarning, match="net.0 \\(Embedding\\) keep point-estimate parameters"):
            return to_bayesian(nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(8, 3)), (2,), num_data=50)

    x, y = torch.randint(0, 10, (50, 2)), torch.randint(0, 3, (50,))
    trained = model()
    guide = auto_normal(trained)
    fit(trained, guide, make_loader(TensorDataset(x, y), 25), Schedule(epochs=1))
    save_posterior(tmp_path / "posterior.pt", trained, guide, {"in_shape": [2], "task": "classification"})
    fresh = model()
    fresh_guide = auto_normal(fresh)
    load_posterior(tmp_path / "posterior.pt", fresh, fresh_guide)
    assert torch.equal(fresh_guide.loc_and_scale("net.2.weight")[0], guide.loc_and_scale("net.2.weight")[0])


def test_float64_starting_means_are_taken_in_the_models_dtype():
    model = small_mlp()
    guide = auto_normal(model, init_loc={"net.1.weight": torch.full((16, 64), 0.25, dtype=torch.float64)})
    guide(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))
    loc = guide.loc_and_scale("net.1.weight")[0]
    assert loc.dtype == torch.float32 and bool((loc == 0.25).all())
