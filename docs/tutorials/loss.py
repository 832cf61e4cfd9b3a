# %% [markdown]
# # What a Bayesian network's loss is made of
#
# The question people ask of every Bayesian-network library: *how is the loss computed?* TensorFlow Probability
# adds `sum(model.losses)` to the NLL and divides the KL by `num_examples`; does a conv kernel's KL differ from a
# dense layer's; what do Pyro's `Trace_ELBO` and `TraceMeanField_ELBO` return? This tutorial answers with numbers from
# one small Bayesian CNN on scikit-learn's digits (it runs in under a minute on 2 cores).
#
# The loss is the negative ELBO: an expected negative log-likelihood plus a KL divergence,
#
# $$-\mathrm{ELBO} = \underbrace{\mathbb{E}_{q(w)}\left[-\sum_{n=1}^N \log p(y_n \mid x_n, w)\right]}_{\text{NLL}}
#   + \underbrace{\mathrm{KL}\left(q(w) \,\|\, p(w)\right)}_{\text{KL}}.$$

# %%
import math

import matplotlib.pyplot as plt
import pyro
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from pyro_bnn import BayesianCNN, KLWeight, NormalPrior, Schedule, auto_normal, elbo_terms, fit, load_data, make_loader

torch.set_num_threads(1)
pyro.set_rng_seed(0)
data = load_data("digits")
x, y = data.train.tensors
model = BayesianCNN(in_shape=(1, 8, 8), num_classes=10, channels=(8,), hidden=(32,), prior=NormalPrior(scale=1.0),
                    num_data=len(x))
guide = auto_normal(model, init_scale=1e-3)
history = fit(model, guide, make_loader(data.train, 64, shuffle=True), Schedule(epochs=15, lr=1e-2))
print(f"{len(x)} training examples; last epoch: NLL {history[-1]['nll']:.1f}, KL {history[-1]['kl']:.1f} (nats)")

# %% [markdown]
# ## The two terms, and the KL of each layer
#
# `elbo_terms(model, guide, x, y)` computes one estimate of both terms on a minibatch, in whole-data units (the
# minibatch's NLL is scaled by `N / B`); here the minibatch is the whole training set. With `kl="analytic"` (the
# default, what `TraceMeanField_ELBO` computes) the KL is in closed form; the NLL is always sampled.

# %%
with torch.no_grad():
    terms = elbo_terms(model, guide, x, y)
print(f"NLL {float(terms.nll):.2f}   KL {float(terms.kl):.2f}   -ELBO {float(terms.loss):.2f}")
for layer, kl in terms.kl_layers().items():
    print(f"  KL of {layer:6} {float(kl):9.2f}")

# %% [markdown]
# ## Closed form against Monte Carlo
#
# `kl="mc"` estimates the KL at the drawn weights, `log q(w) - log p(w)`, as `Trace_ELBO` does. Its mean over draws
# is the closed form; one draw is noisy.

# %%
draws = torch.stack([elbo_terms(model, guide, x, y, kl="mc").kl.detach() for _ in range(300)]).double()
print(f"closed form {float(terms.kl):.2f};  Monte Carlo {float(draws.mean()):.2f} +- "
      f"{float(draws.std() / math.sqrt(len(draws))):.2f} (300 draws; one draw's sd {float(draws.std()):.2f})")

# %% [markdown]
# ## A conv kernel's KL is the same per-weight formula
#
# Every weight of a mean-field Normal posterior has its own `N(mu, sigma^2)` against the prior `N(0, s^2)`:
# `KL = log(s / sigma) + (sigma^2 + mu^2) / (2 s^2) - 1/2`, summed over the weights. A conv kernel of shape
# `(C_out, C_in, k, k)` is just more weights: the sum below, written out by hand, is the KL the library reports for
# the conv layer (`net.0`) and the dense ones alike.

# %%
for name, kl in terms.kl_sites.items():
    mu, sigma = guide.loc_and_scale(name)
    by_hand = (torch.log(1.0 / sigma) + (sigma**2 + mu**2) / 2 - 0.5).sum()
    print(f"{name:14} {str(tuple(mu.shape)):16} library {float(kl):9.3f}   by hand {float(by_hand):9.3f}")

# %% [markdown]
# ## Two units: whole data and per example
#
# TFP's Keras layers report `loss = mean NLL + sum(model.losses) / num_examples`: the same -ELBO divided by `N`.
# Dividing the KL by the *batch* size instead weights it `N / B` times too much.

# %%
per_example = terms.per_example()
print(f"whole data: NLL {float(terms.nll):.2f} + KL {float(terms.kl):.2f} = {float(terms.loss):.2f}")
print(f"per example (TFP): mean NLL {per_example['nll']:.4f} + KL / N {per_example['kl']:.4f} = {per_example['loss']:.4f}")
print(f"KL / batch size 64 = {float(terms.kl) / 64:.4f}: {len(x) / 64:.1f} times KL / N")

# %% [markdown]
# ## Pyro's own ELBOs on the same pair
#
# The model and guide are an ordinary Pyro pair. `TraceMeanField_ELBO().loss(model, guide, x, y)` is one estimate
# of the same -ELBO (closed-form KL, a sampled NLL), `Trace_ELBO` the fully sampled one; their means over draws agree
# with `elbo_terms`.

# %%
ours = torch.stack([elbo_terms(model, guide, x, y).loss.detach() for _ in range(100)])
mean_field = torch.tensor([TraceMeanField_ELBO().loss(model, guide, x, y) for _ in range(100)])
sampled = torch.tensor([Trace_ELBO().loss(model, guide, x, y) for _ in range(100)])
for label, values in [("pyro_bnn elbo_terms", ours), ("TraceMeanField_ELBO", mean_field), ("Trace_ELBO", sampled)]:
    print(f"{label:20} {float(values.mean()):9.2f} +- {float(values.std() / 10):.2f}")

# %% [markdown]
# ## What `kl_weight` and a warm-up change
#
# `KLWeight(beta)` multiplies the KL by `beta` at every step: with `beta < 1` the posterior is tempered, not the
# ELBO's. A warm-up ramps `beta` up over the first epochs and ends on the exact ELBO. `metrics.json` records which
# (`exact_elbo`).

# %%
for weight in [KLWeight(1.0), KLWeight(0.03), KLWeight(1.0, warmup_epochs=5)]:
    print(f"{weight.describe(15)}: exact ELBO {weight.is_exact_elbo(15)}; per epoch "
          f"{[round(weight.over(15).epoch_weight(epoch), 2) for epoch in range(8)]} ...")

# %% [markdown]
# ## The terms over training
#
# `fit`'s history has the terms of each epoch (means over its minibatches), the KL of each layer among them: what a
# run's `history.csv` and `elbo_terms.png` hold.

# %%
epochs = [record["epoch"] for record in history]
figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
left.plot(epochs, [r["nll"] for r in history], label="NLL")
left.plot(epochs, [r["kl"] for r in history], label="KL")
left.set_xlabel("epoch"), left.set_ylabel("nats (whole data)"), left.legend()
for layer in terms.kl_layers():
    right.plot(epochs, [r[f"kl.{layer}"] for r in history], label=layer)
right.set_xlabel("epoch"), right.set_title("KL per layer"), right.legend()
figure.tight_layout()
plt.show()
