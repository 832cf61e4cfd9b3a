"""A candidate recipe for the default digits CNN, on given splits and seeds: trains one posterior per split,
seed and OOD set, prints one JSON line per run, then one line of means.

Scored like the app (100 posterior samples; rotated digits, or held-out classes 8 and 9, as the OOD set).
The exploration behind the default recipe (README, "See how uncertain it is") ran this script; its
arguments per candidate and the output are in ``benchmarks/results/2026-11-24-recipe_candidates.txt``::

    python benchmarks/recipe_candidate.py --splits 0 1 2 --seeds 0 1 --ood rotated heldout \\
        --channels 24,48 --hidden 64 --act gelu --lr 0.01 --estimator dense_local_reparameterization --klw 0.03

(``--bayesian last``: only the last Linear layer Bayesian, the rest point estimates fitted in the same step.)

(the runs are independent: the exploration ran each split and seed in its own process, two at a time).
"""
import argparse
import json
import statistics
import time

import pyro
import torch

from pyro_bnn import (
    BayesianCNN,
    KLWeight,
    MeanFieldELBO,
    NormalPrior,
    Schedule,
    auto_normal,
    fit,
    load_data,
    load_ood,
    make_loader,
    posterior_samples,
    score,
)

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--splits", type=int, nargs="+", default=[0])
p.add_argument("--seeds", type=int, nargs="+", default=[0])
p.add_argument("--ood", nargs="+", default=["rotated"], choices=["rotated", "heldout"])
p.add_argument("--channels", default="64,128")
p.add_argument("--hidden", default="128")
p.add_argument("--kernel", type=int, default=3)
p.add_argument("--act", default="relu")
p.add_argument("--scale", type=float, default=1.0)
p.add_argument("--fan_in", type=int, default=0)
p.add_argument("--learn", type=int, default=0)
p.add_argument("--alpha", type=float, default=0.0)
p.add_argument("--init_scale", type=float, default=1e-3)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--epochs", type=int, default=60)
p.add_argument("--bs", type=int, default=32)
p.add_argument("--sched", default="cosine")
p.add_argument("--klw", type=float, default=1.0)
p.add_argument("--warm", type=int, default=0)
p.add_argument("--estimator", default="shared")
p.add_argument("--particles", type=int, default=1)
p.add_argument("--bayesian", default="all",
               help="the Bayesian layers: all, last, or comma-separated module names (net.0,net.7); the rest are "
                    "point estimates")
p.add_argument("--tag", default="")
a = p.parse_args()
torch.set_num_threads(1)


def run(split: int, seed: int, ood_name: str) -> dict:
    pyro.set_rng_seed(seed)
    data = load_data("digits", split_seed=split, holdout_classes=[8, 9] if ood_name == "heldout" else [])
    ood = load_ood(data, ood_name)
    kw = dict(learn_scale=bool(a.learn), hyperprior_alpha=a.alpha) if a.learn else {}
    prior = NormalPrior(a.scale, fan_in=bool(a.fan_in), **kw)
    model = BayesianCNN(data.in_shape, 10, channels=[int(c) for c in a.channels.split(",")],
                        hidden=[int(h) for h in a.hidden.split(",") if h], kernel_size=a.kernel, activation=a.act,
                        prior=prior, num_data=data.num_train,
                        bayesian=a.bayesian if a.bayesian in ("all", "last") else a.bayesian.split(","))
    guide = auto_normal(model, init_scale=a.init_scale)
    t = time.perf_counter()
    h = fit(model, guide, make_loader(data.train, a.bs, shuffle=True, seed=seed), Schedule(epochs=a.epochs, lr=a.lr,
            lr_schedule=a.sched, kl_weight=KLWeight(a.klw, a.warm)), MeanFieldELBO(num_particles=a.particles,
            estimator=a.estimator))
    ft = time.perf_counter() - t
    pyro.set_rng_seed(seed)
    tl = make_loader(data.test, 1000)
    s = posterior_samples(model, guide, tl, 100)
    m, _ = score(model, s, tl, make_loader(ood, 1000))
    log_sd = torch.cat([p.detach().reshape(-1) for n, p in guide.named_parameters() if "scales" in n])  # log(scale)
    return dict(tag=a.tag, split=split, seed=seed, ood=ood_name, acc=m["accuracy"], nll=m["nll"], ece=m["ece"],
                auc_mi=m["ood_auroc_mutual_information"], auc_ent=m["ood_auroc_entropy"], mi=m["mutual_information"],
                fit_s=ft, kl=h[-1]["kl"], tnll=h[-1]["nll"], sd_med=float(log_sd.exp().median()))


runs = []
for ood_name in a.ood:
    for split in a.splits:
        for seed in a.seeds:
            runs.append(run(split, seed, ood_name))
            print(json.dumps(runs[-1]), flush=True)
for ood_name in a.ood:
    rows = [r for r in runs if r["ood"] == ood_name]
    means = {k: round(statistics.mean(r[k] for r in rows), 4) for k in ("acc", "nll", "ece", "auc_mi", "auc_ent", "fit_s")}
    print(json.dumps(dict(tag=a.tag, ood=ood_name, runs=len(rows), mean=means)))
