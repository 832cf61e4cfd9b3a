"""Uncertainty against the baselines: the default pyro_bnn run, one plain network, a deep ensemble.

On scikit-learn's digits, for each split and seed:

* ``pyro_bnn``: the default ``python -m pyro_bnn.train`` (the app's :func:`~pyro_bnn.app.train.train` on the
  composed default config, with ``data.split_seed`` and ``seed`` set), once with the rotated digits as the
  out-of-distribution set (the default) and once with classes 8 and 9 held out of training
  (``data.ood=heldout data.holdout_classes=[8,9]``);
* ``ensemble``: ``--members`` plain networks of the same architecture (the config's ``model``), trained
  with Adam on the cross-entropy (same epochs, batch size, learning-rate schedule and peak rate as the
  default run; seeds ``1000 * seed + member``), their softmax outputs averaged (Lakshminarayanan et al. 2017);
* ``plain``: the first member alone;
* ``finetuned``: Bayesian fine-tuning of that plain network: :func:`pyro_bnn.to_bayesian` with
  ``bayesian=--finetune-layers`` (default the dense head ``net.7,net.9``; the convolutions stay point estimates,
  trained on), N(0, 1) prior, the guide's means at the trained weights (:func:`pyro_bnn.pretrained_weights`,
  sd ``--finetune-init-scale``), ``--finetune-epochs`` epochs of the exact ELBO (KL weight 1) at
  ``--finetune-lr`` with a cosine decay and the default's estimator; 100 posterior draws. Its ``train_s`` is
  the fine-tuning alone (the extra cost over
  ``plain``);
* ``finetuned_moped`` (with ``--finetune-moped DELTA`` > 0): the same under a prior centred at the trained weights,
  :class:`pyro_bnn.MopedPrior` ``N(w, (DELTA |w|)^2)`` (MOPED; a prior per weight: trained on Pyro's traces).

All are scored by the same code (:func:`pyro_bnn.evaluation.predictive.classification_metrics`,
:func:`pyro_bnn.evaluation.predictive.ood_metrics`) on the same test and OOD sets. ``rot`` and ``held`` are the OOD
AUROCs (mutual information, and entropy of the predictive mean); a single network has no mutual information
(its AUROC is 0.5). ``train_s`` is the training time (all members for the ensemble; the rotated run).

    python benchmarks/ood_baselines.py --splits 0 1 2 --seeds 0 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Dict, List

import pyro
import torch
from common import train_config

from pyro_bnn import (
    MeanFieldELBO,
    MopedPrior,
    NormalPrior,
    Schedule,
    auto_normal,
    classification_metrics,
    cnn_network,
    fit,
    load_data,
    load_ood,
    lr_scheduler,
    make_loader,
    ood_metrics,
    posterior_samples,
    pretrained_weights,
    score,
    to_bayesian,
)
from pyro_bnn.app.train import train

HELDOUT = [8, 9]


def train_plain(cfg, data, seed: int) -> torch.nn.Module:
    """One plain network of the config's architecture, trained with Adam on the cross-entropy."""
    torch.manual_seed(seed)
    net = cnn_network(data.in_shape, data.num_outputs, cfg.model.channels, cfg.model.kernel_size,
                      cfg.model.hidden, cfg.model.activation)
    loader = make_loader(data.train, cfg.data.batch_size, shuffle=True, seed=seed)
    adam = torch.optim.Adam(net.parameters(), lr=cfg.inference.lr)
    schedule = lr_scheduler(adam, cfg.inference.lr_schedule, cfg.inference.epochs * len(loader))
    for _ in range(cfg.inference.epochs):
        for x, y in loader:
            adam.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(x), y).backward()
            adam.step()
            schedule.step()
    return net.eval()


@torch.no_grad()
def probabilities(nets: List[torch.nn.Module], dataset) -> torch.Tensor:
    x = dataset.tensors[0]
    return torch.stack([net(x).softmax(-1) for net in nets])


def finetune(cfg, data, ood, net: torch.nn.Module, seed: int, layers: List[str], epochs: int, lr: float,
             init_scale: float, moped: float = 0.0) -> Dict[str, float]:
    """The trained plain ``net`` with a Bayesian ``layers``, fine-tuned on the exact ELBO under N(0, 1) (or, with
    ``moped`` > 0, the MOPED prior of that delta); its test metrics."""
    pyro.set_rng_seed(seed)
    prior = MopedPrior(pretrained_weights(net), delta=moped) if moped > 0 else NormalPrior(1.0)
    model = to_bayesian(net, data.in_shape, prior=prior, num_data=data.num_train, bayesian=layers)
    guide = auto_normal(model, init_scale=init_scale, init_loc=pretrained_weights(net, model=model))
    start = time.perf_counter()
    fit(model, guide, make_loader(data.train, cfg.data.batch_size, shuffle=True, seed=seed), Schedule(epochs=epochs,
        lr=lr, lr_schedule="cosine", kl_weight=1.0), MeanFieldELBO(estimator=cfg.inference.estimator))
    seconds = time.perf_counter() - start
    pyro.set_rng_seed(seed)
    test = make_loader(data.test, 1000)
    metrics, _ = score(model, posterior_samples(model, guide, test, 100), test, make_loader(ood, 1000))
    return {**metrics, "train_s": seconds}


def plain_rows(cfg, split: int, seed: int, members: int, layers: List[str], epochs: int, lr: float,
               init_scale: float, moped: float = 0.0) -> Dict[str, Dict[str, float]]:
    rows = {}
    for ood_name, classes in (("rotated", []), ("heldout", HELDOUT)):
        data = load_data("digits", split_seed=split, holdout_classes=classes)
        ood = load_ood(data, ood_name)
        start = time.perf_counter()
        nets = [train_plain(cfg, data, 1000 * seed + m) for m in range(members)]
        seconds = time.perf_counter() - start
        targets = data.test.tensors[1]
        probs, probs_ood = probabilities(nets, data.test), probabilities(nets, ood)
        for name, k in (("plain", 1), (f"ensemble{members}", members)):
            row = rows.setdefault(name, {})
            ood_scores = ood_metrics(probs[:k], probs_ood[:k])
            key = "rot" if ood_name == "rotated" else "held"
            row[f"{key}_mi"], row[f"{key}_ent"] = ood_scores["auroc_mutual_information"], ood_scores["auroc_entropy"]
            if ood_name == "rotated":
                row.update(classification_metrics(probs[:k], targets))
                row["train_s"] = seconds * k / members
        for name, delta in (("finetuned", 0.0), ("finetuned_moped", moped))[:2 if moped > 0 else 1]:
            tuned = finetune(cfg, data, ood, nets[0], seed, layers, epochs, lr, init_scale, delta)
            row = rows.setdefault(name, {})
            key = "rot" if ood_name == "rotated" else "held"
            row[f"{key}_mi"], row[f"{key}_ent"] = tuned["ood_auroc_mutual_information"], tuned["ood_auroc_entropy"]
            if ood_name == "rotated":
                row.update({k: tuned[k] for k in ("accuracy", "nll", "ece", "mutual_information", "train_s")})
    return rows


def bnn_row(split: int, seed: int) -> Dict[str, float]:
    row = {}
    common = [f"data.split_seed={split}", f"seed={seed}", "progress=false"]
    for key, extra in (("rot", []), ("held", ["data.ood=heldout", f"data.holdout_classes=[{','.join(map(str, HELDOUT))}]"])):
        with tempfile.TemporaryDirectory() as run_dir:
            metrics = train(train_config(*common, *extra), run_dir)
        test = metrics["test"]
        row[f"{key}_mi"], row[f"{key}_ent"] = test["ood_auroc_mutual_information"], test["ood_auroc_entropy"]
        if key == "rot":
            row.update({k: test[k] for k in ("accuracy", "nll", "ece", "mutual_information")})
            row["train_s"] = metrics["fit_time_s"]
    return row


COLUMNS = [("accuracy", "acc", ".2%"), ("nll", "nll", ".4f"), ("ece", "ece", ".4f"), ("rot_mi", "rot MI", ".3f"),
           ("rot_ent", "rot ent", ".3f"), ("held_mi", "held MI", ".3f"), ("held_ent", "held ent", ".3f"),
           ("mutual_information", "test MI", ".4f"), ("train_s", "train_s", ".1f")]


def line(name: str, where: str, row: Dict[str, float]) -> str:
    return f"{name:15} {where:>8} " + " ".join(f"{format(row[k], f):>8}" for k, _, f in COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--finetune-layers", default="net.7,net.9", help="the fine-tuned network's Bayesian layers")
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--finetune-lr", type=float, default=0.01)
    parser.add_argument("--finetune-init-scale", type=float, default=0.05, help="the guide's starting sd")
    parser.add_argument("--finetune-moped", type=float, default=0.0,
                        help="> 0: a finetuned_moped row too, under MopedPrior(delta=this)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = train_config()
    print(f"torch {torch.__version__}, pyro {pyro.__version__}, 1 thread; digits, model {cfg.model.name} "
          f"channels {list(cfg.model.channels)} hidden {list(cfg.model.hidden)} {cfg.model.activation}, "
          f"{cfg.inference.epochs} epochs; pyro_bnn: estimator {cfg.inference.estimator}, kl_weight {cfg.inference.kl_weight}")
    print(f"{'method':15} {'split/sd':>8} " + " ".join(f"{label:>8}" for _, label, _ in COLUMNS), flush=True)
    results: Dict[str, List[Dict[str, float]]] = {}
    for split in args.splits:
        for seed in args.seeds:
            rows = {"pyro_bnn": bnn_row(split, seed),
                    **plain_rows(cfg, split, seed, args.members, args.finetune_layers.split(","), args.finetune_epochs,
                               args.finetune_lr, args.finetune_init_scale, args.finetune_moped)}
            for name, row in rows.items():
                row.setdefault("mutual_information", 0.0)
                results.setdefault(name, []).append(row)
                print(line(name, f"{split}/{seed}", row), flush=True)
    print("means over all splits and seeds:")
    for name, rows in results.items():
        print(line(name, "mean", {k: statistics.mean(r[k] for r in rows) for k, _, _ in COLUMNS}))
    bnn, ensemble = results["pyro_bnn"], results[f"ensemble{args.members}"]
    wins = sum(b["rot_mi"] > e["rot_mi"] for b, e in zip(bnn, ensemble))
    print(f"pyro_bnn's rotated-digits MI AUROC above the ensemble's on {wins} of {len(bnn)} runs; "
          f"training time {statistics.mean(r['train_s'] for r in bnn) / statistics.mean(r['train_s'] for r in ensemble):.2f}"
          " of the ensemble's")


if __name__ == "__main__":
    main()
