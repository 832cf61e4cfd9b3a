"""Run under ``torchrun --standalone --nproc_per_node=2``: data-parallel SVI against one process on the whole batch.

Every rank computes, with the same seeds, (a) one step and two epochs of ``fit`` in one process on the whole
minibatches, and (b) the same on its shard with ``distributed=True``; rank 0 writes the differences as JSON to
the path given as the first argument.
"""

import json
import sys

import pyro
import torch
import torch.distributed as dist

from pyro_bnn import (
    BayesianMLP,
    MeanFieldELBO,
    NormalPrior,
    Schedule,
    auto_normal,
    fit,
    initialize_guide,
    load_data,
    make_loader,
)
from pyro_bnn.training.distributed import GradientAllReduce


def pair(num_data):
    pyro.set_rng_seed(0)
    model = BayesianMLP((1, 8, 8), 10, hidden=(32,), prior=NormalPrior(1.0), num_data=num_data)
    return model, auto_normal(model, init_scale=0.05)


def one_step(x, y, part=None):
    model, guide = pair(len(x))
    initialize_guide(guide, x[:1], y[:1])
    objective = MeanFieldELBO()
    parameters = objective.parameters(model, guide)
    pyro.set_rng_seed(1)  # the same weight noise on every rank
    xs, ys = (x, y) if part is None else (x[part], y[part])
    terms = objective.terms(model, guide, xs, ys)
    (terms.nll + terms.kl).backward()
    record = terms.record()
    if part is not None:
        record = GradientAllReduce(parameters)(len(xs), record)
    return [p.grad.clone() for p in parameters], record.as_dict()


def main(path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    train = load_data("digits").train
    x, y = train.tensors[0][:301], train.tensors[1][:301]  # an odd batch: the ranks hold 150 and 151
    grads, record = one_step(x, y)
    part = slice(len(x) * rank // world, len(x) * (rank + 1) // world)
    dist_grads, dist_record = one_step(x, y, part)
    result = {"grad_max_abs_diff": max(float((a - b).abs().max()) for a, b in zip(grads, dist_grads)),
              "grad_max_abs": max(float(a.abs().max()) for a in grads),
              "loss": float(record["loss"]), "dist_loss": float(dist_record["loss"]),
              "kl": float(record["kl"]), "dist_kl": float(dist_record["kl"])}
    for estimator in ("shared", "local_reparameterization", "flipout"):  # per-example noise: the whole batch's rows
        histories = []
        for r, w in ((0, 1), (rank, world)):
            model, guide = pair(len(train))
            histories.append(fit(model, guide, make_loader(train, 64, shuffle=True, seed=0, rank=r, world_size=w),
                                 Schedule(epochs=2, lr=0.01), MeanFieldELBO(estimator=estimator), distributed=w > 1))
        result[f"history_{estimator}"] = [[h["loss"] for h in hist] for hist in histories]
    if rank == 0:
        with open(path, "w") as f:
            json.dump(result, f)
    dist.barrier()  # both ranks done before either tears the group down (gloo aborts a rank torn down mid-call)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
