# %% [markdown]
# # Regression with two kinds of uncertainty
#
# A regression network's predictive spread has two parts: the noise in the data (*aleatoric*: what more data would
# not remove) and the posterior's uncertainty about the weights (*epistemic*: what it would). This tutorial trains
# the UCI benchmark's network on the yacht data set twice, with one noise sd for all examples (homoscedastic) and
# with a noise sd predicted per example (heteroscedastic), both under a prior whose scale is learned, and reads both
# parts off the posterior predictive. Where the benchmark's files (`../shared/uci`, the standard layout) are absent,
# it writes a small data set of that layout itself.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch

from pyro_bnn import (
    BayesianMLP,
    Gaussian,
    HeteroscedasticGaussian,
    KLWeight,
    MeanFieldELBO,
    NormalPrior,
    Schedule,
    auto_normal,
    evaluate,
    fit,
    in_original_units,
    load_data,
    make_loader,
)

torch.set_num_threads(1)


def uci_root() -> Path:
    """The benchmark's data sets, if this checkout sits beside them; else a generated one in their layout."""
    for parent in [Path.cwd(), *Path.cwd().parents]:
        if (parent / "shared" / "uci" / "yacht" / "data" / "data.txt").is_file():
            return parent / "shared" / "uci"
    root = Path(tempfile.mkdtemp())
    folder = root / "yacht" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(308, 6))
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] + (0.1 + 0.4 * np.abs(x[:, 2])) * rng.normal(size=308)  # noise grows
    np.savetxt(folder / "data.txt", np.column_stack([x, y]))
    np.savetxt(folder / "index_features.txt", range(6), fmt="%d")
    np.savetxt(folder / "index_target.txt", [6], fmt="%d")
    (folder / "n_splits.txt").write_text("1\n")
    (folder / "n_hidden.txt").write_text("50\n")
    order = rng.permutation(308)
    np.savetxt(folder / "index_train_0.txt", order[:277], fmt="%d")
    np.savetxt(folder / "index_test_0.txt", order[277:], fmt="%d")
    return root


data = load_data("uci", name="yacht", root=str(uci_root()), split=0)
print(f"{data.num_train} training and {len(data.test)} test examples, {data.in_shape[0]} inputs; targets "
      f"standardised (sd {data.target_std:.2f} in the original units)")

# %% [markdown]
# ## Two likelihoods, one recipe
#
# Both networks are the benchmark's (one hidden layer of 50 units), under a Normal prior whose scale is learned per
# layer (`learn_scale=True`: each step sets it to its optimum given the posterior, under an inverse-gamma hyperprior,
# Wu et al. 2019). `Gaussian()` learns one noise sd; `HeteroscedasticGaussian()` makes the network output a mean and
# a sd per example. Training is the exact ELBO after a KL warm-up over the first 30% of the epochs.


# %%
def trained(likelihood, seed=0, epochs=300):
    pyro.set_rng_seed(seed)
    outputs = 2 if isinstance(likelihood, HeteroscedasticGaussian) else 1
    model = BayesianMLP(data.in_shape, outputs, hidden=(50,), likelihood=likelihood, num_data=data.num_train,
                        prior=NormalPrior(scale=5 ** 0.5, learn_scale=True, hyperprior_alpha=1.0))
    guide = auto_normal(model, init_scale=1e-3)
    history = fit(model, guide, make_loader(data.train, 32, shuffle=True, seed=seed),
                  Schedule(epochs=epochs, lr=1e-2, lr_schedule="cosine", kl_weight=KLWeight(1.0, warmup_epochs=90)),
                  MeanFieldELBO(estimator="local_reparameterization"))
    return model, guide, history


runs = {"homoscedastic": trained(Gaussian()), "heteroscedastic": trained(HeteroscedasticGaussian())}

# %% [markdown]
# ## The two parts of the predictive spread
#
# `evaluate` draws weights from the posterior, runs the network on the test inputs and scores the predictive
# mixture. Its `predictive_std` splits into `aleatoric_std` (the mean of the noise sds) and `epistemic_std` (the
# spread of the predicted means over the weight draws); `in_original_units` turns standardised scores back into the
# data's own units (as the UCI tables report them).

# %%
print(f"{'likelihood':16} {'RMSE':>7} {'test LL':>8} {'aleatoric sd':>13} {'epistemic sd':>13} {'90% coverage':>13}")
for name, (model, guide, _) in runs.items():
    pyro.set_rng_seed(0)
    metrics = in_original_units(evaluate(model, guide, make_loader(data.test, 1000), num_samples=200), data.target_std)
    print(f"{name:16} {metrics['rmse']:7.3f} {metrics['log_likelihood']:8.3f} {metrics['aleatoric_std']:13.3f} "
          f"{metrics['epistemic_std']:13.3f} {metrics['coverage_90']:13.2f}")

# %% [markdown]
# ## The learned prior
#
# The prior's scale of each layer ended where the posterior put it: a layer whose weights the data pinned down gets
# a narrow prior, one it did not a wide one. The history holds each scale at every epoch.

# %%
for name, (_, _, history) in runs.items():
    scales = {key.removeprefix("prior_scale."): round(value, 3) for key, value in history[-1].items()
              if key.startswith("prior_scale.")}
    print(name, scales)

# %% [markdown]
# ## Per example: noise against what the posterior does not know
#
# With the heteroscedastic likelihood, each test example gets its own noise sd. Below, each example's two sds
# against its absolute error: the noise follows the error; the epistemic part is smaller and flatter.

# %%
model, guide, _ = runs["heteroscedastic"]
x_test, y_test = data.test.tensors
pyro.set_rng_seed(0)
predictive = pyro.infer.Predictive(model, guide=guide, num_samples=200, return_sites=["_RETURN"])
with torch.no_grad():
    outputs = predictive(x_test)["_RETURN"]  # (200, examples, 2): mean and raw sd output per draw
means, noise = model.likelihood.loc_scale(outputs)
error = (means.mean(0) - y_test).abs() * data.target_std
figure, axis = plt.subplots(figsize=(5, 3.2))
axis.scatter(error, noise.mean(0) * data.target_std, s=12, label="aleatoric sd (noise)")
axis.scatter(error, means.std(0) * data.target_std, s=12, label="epistemic sd (means)")
axis.set_xlabel("absolute error (original units)"), axis.set_ylabel("sd"), axis.legend()
figure.tight_layout()
plt.show()
