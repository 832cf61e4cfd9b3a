# %% [markdown]
# # Sweeps: a prior-scale sweep and replicates, read back in Python
#
# A sweep is one command with `-m` (Hydra's multirun): every combination of the values given becomes a job with
# its own run dir, and pyro_bnn writes a summary at the sweep's root: `summary.csv` (a row per job) and
# `summary.md` (with the mean and standard error over replicates where jobs differ only in their seed or split).
# `launcher=batched` trains the jobs that differ only in the prior scale, the seed, the split, the KL weight or the
# initial scale as one batch of models in one process. This tutorial runs two small sweeps of the digits MLP from
# the command line and reads their results back (about a minute on 2 cores).

# %%
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

work = Path(tempfile.mkdtemp())
RUN = [sys.executable, "-m", "pyro_bnn.train", "-m", "+experiment=digits_mlp", "inference.epochs=10",
       "launcher=batched", "hydra.job_logging.root.level=WARNING"]


def sweep(name, *overrides):
    """Run a sweep into ``work/name``; its summary's rows."""
    directory = work / name
    command = [*RUN, *overrides, f"hydra.sweep.dir={directory}"]
    print("$", " ".join(command[1:]))
    subprocess.run(command, check=True, capture_output=True, text=True)
    with (directory / "summary.csv").open() as table:
        return directory, list(csv.DictReader(table))


# %% [markdown]
# ## A prior-scale sweep
#
# `+sweep=prior_scale` is a grid of seven prior scales, from 0.01 to 10 (`pyro_bnn/app/conf/sweep/prior_scale.yaml`);
# `-m prior.scale=0.1,1` would give any list. The seven jobs differ only in `prior.scale`: one batch.

# %%
scales_dir, rows = sweep("prior_scale", "+sweep=prior_scale")
print(f"{'prior.scale':>11} {'status':>7} {'accuracy':>9} {'NLL':>7} {'final KL':>10}")
for row in rows:
    print(f"{row['prior.scale']:>11} {row['status']:>7} {float(row['accuracy']):9.4f} {float(row['nll']):7.4f} "
          f"{float(row['train_kl']):10.1f}")

# %% [markdown]
# Each row's figures come from its job's `metrics.json`; the sweep also draws them against the swept key
# (`summary_prior.scale.png`). Plotted here from the table:

# %%
scales = [float(row["prior.scale"]) for row in rows]
figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
left.semilogx(scales, [float(row["nll"]) for row in rows], "o-")
left.set_xlabel("prior scale"), left.set_ylabel("test NLL")
right.loglog(scales, [float(row["train_kl"]) for row in rows], "o-")
right.set_xlabel("prior scale"), right.set_ylabel("final KL (nats)")
figure.tight_layout()
plt.show()

# %% [markdown]
# ## Replicates: mean +- standard error
#
# Jobs that differ only in their seed are replicates of one setting. `summary.md` gives their mean and standard error
# (sd / sqrt(n)), as papers report them; `summary.csv` gives each row its group's `<metric>_mean` and `<metric>_se`.

# %%
replicates_dir, rows = sweep("replicates", "seed=0,1,2")
first = rows[0]
for metric in ["accuracy", "nll", "ece"]:
    print(f"{metric:9} {float(first[metric + '_mean']):.4f} +- {float(first[metric + '_se']):.4f} "
          f"over {first['replicates']} seeds; per seed {[round(float(row[metric]), 4) for row in rows]}")

# %%
print((replicates_dir / "summary.md").read_text())

# %% [markdown]
# Every job's own run dir (`<sweep dir>/<job number>/`) holds the files of a run alone: `metrics.json`,
# `history.csv`, `posterior.pt`, the figures. A sweep that stopped (Ctrl-C, a lost node) is finished by the same
# command plus `resume=true hydra.sweep.dir=<its dir>`; `tracker=mlflow` shows a sweep in MLflow as a parent run
# with a child run per job ([sweeps](../sweeps.md)).
