"""One candidate recipe for the default digits CNN, on one split and seed: trains, then prints one JSON line.

Scored like the app (100 posterior samples; rotated digits, or held-out classes 8 and 9, as the OOD set).
The exploration behind the default recipe (README, "See how uncertain it is") ran this script; its
arguments per candidate and the output are in ``benchmarks/results/2026-11-24-recipe_candidates.txt``::

    python benchmarks/recipe_candidate.py --split 0 --seed 0 --channels 16,32 --hidden 64 --lr 0.01 --klw 0.1
"""
import argparse
import json
import time

import pyro
import torch

from pyro_bnn import BayesianCNN, NormalPrior, auto_normal, fit, load_data, make_loader
from pyro_bnn.data import load_ood
from pyro_bnn.evaluation import posterior_samples, score
from pyro_bnn.inference import KLWeight

p = argparse.ArgumentParser()
p.add_argument("--split", type=int, default=0)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--channels", default="64,128")
p.add_argument("--hidden", default="128")
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
p.add_argument("--ood", default="rotated")
p.add_argument("--tag", default="")
a = p.parse_args()
torch.set_num_threads(1)
pyro.set_rng_seed(a.seed)
data = load_data("digits", split_seed=a.split, holdout_classes=[8, 9] if a.ood == "heldout" else [])
ood = load_ood(data, a.ood)
kw = dict(learn_scale=bool(a.learn), hyperprior_alpha=a.alpha) if a.learn else {}
prior = NormalPrior(a.scale, fan_in=bool(a.fan_in), **kw)
model = BayesianCNN(data.in_shape, 10, channels=[int(c) for c in a.channels.split(",")],
                    hidden=[int(h) for h in a.hidden.split(",") if h], prior=prior, num_data=data.num_train)
guide = auto_normal(model, init_scale=a.init_scale)
t = time.perf_counter()
h = fit(model, guide, make_loader(data.train, a.bs, shuffle=True, seed=a.seed), epochs=a.epochs, lr=a.lr,
        lr_schedule=a.sched, kl_weight=KLWeight(a.klw, a.warm))
ft = time.perf_counter() - t
pyro.set_rng_seed(a.seed)
tl = make_loader(data.test, 1000)
s = posterior_samples(model, guide, tl, 100)
m, _ = score(model, s, tl, make_loader(ood, 1000))
log_sd = torch.cat([p.detach().reshape(-1) for n, p in guide.named_parameters() if "scales" in n])  # log(scale)
out = dict(tag=a.tag, split=a.split, seed=a.seed, acc=m["accuracy"], nll=m["nll"], ece=m["ece"],
           auc_mi=m["ood_auroc_mutual_information"], auc_ent=m["ood_auroc_entropy"], mi=m["mutual_information"],
           fit_s=ft, kl=h[-1]["kl"], tnll=h[-1]["nll"], sd_med=float(log_sd.exp().median()))
print(json.dumps(out), flush=True)
