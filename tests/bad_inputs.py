"""Every bad input covered, with (a part of) the one-line message it gets: the table of docs/bad_inputs.md.

``CLI``: arguments of an entry point (``python -m <module> ...``); ``{run}`` stands for a trained run dir, ``{tmp}``
for a temporary dir (holding a file ``a_file`` and a truncated ``truncated/posterior.pt``). ``LIBRARY``: a library
call (the name of the case in tests/test_bad_inputs.py).
"""

#: (module, arguments, message)
CLI = [
    ("pyro_bnn.train", "guide=auto_lowrank guide.rank=1000000", "guide.rank=1000000 is not allowed: use an integer from 1 to 1000"),
    ("pyro_bnn.train", "eval.num_samples=100000000", "eval.num_samples=100000000 is not allowed: use an integer from 1 to 10000"),
    ("pyro_bnn.train", "threads=100000", "threads=100000 is not allowed: use an integer from 0 (torch's default) to"),
    ("pyro_bnn.train", "prior=student_t prior.df=1e-8", "prior.df=1e-08 is not allowed: use a finite number >= 1"),
    ("pyro_bnn.train", "inference.lr=8 inference.epochs=20", "the loss exploded to"),
    ("pyro_bnn.train", "guide.init_scale=1e10", "guide.init_scale=10000000000.0 is wider than the prior (prior.scale=1.0)"),
    ("pyro_bnn.train", "objective=test.rmse", "objective=test.rmse is not a metric of this run (data=digits"),
    ("pyro_bnn.train", "seed=-1", "seed=-1 is not allowed: use an integer from 0 to 2**32 - 1"),
    ("pyro_bnn.train", "data.split_seed=-1", "data.split_seed=-1 is not allowed: use an integer >= 0"),
    ("pyro_bnn.train", "+inference.epoch=3", "+inference.epoch is not a key of the config: did you mean inference.epochs?"),
    ("pyro_bnn.train", "data=mnist data.root={tmp}", "dataset 'mnist' was not found under"),
    ("pyro_bnn.train", "prior.scale=0", "prior.scale=0.0 is not allowed: use a finite number > 0"),
    ("pyro_bnn.train", "model.kernel_size=2", "model.kernel_size=2 is not allowed: use an odd integer >= 1"),
    ("pyro_bnn.train", "model=cnn data=toy_regression", "model=cnn needs image data"),
    ("pyro_bnn.train", "device=cuda:x", "device=cuda:x is not allowed: use cpu, cuda or cuda:N"),
    ("pyro_bnn.train", "inference.fused=true guide=auto_delta", "fused=True: the fused mean-field step cannot train this pair"),
    ("pyro_bnn.train", "resume=true hydra.run.dir={tmp}/nothing_here", "has no checkpoint.pt: pass hydra.run.dir"),
    ("pyro_bnn.train", "hydra.run.dir={tmp}/a_file/run", "cannot be written (Not a directory): set hydra.run.dir"),
    ("pyro_bnn.train", "hydra.run.dir={run}", "already holds a run (metrics.json"),
    ("pyro_bnn.train", "inference.num_particles=100000",
     "inference.num_particles=100000 is not allowed: use an integer from 1 to 1000"),
    ("pyro_bnn.train", "resume=true hydra.run.dir={run}", "that run finished (metrics.json is there)"),
    ("pyro_bnn.train", "data=uci model=mlp data.root={tmp}", "no UCI data set 'yacht' under"),
    ("pyro_bnn.train", "data=uci model=mlp data.validation=1", "data.validation=1.0 is not allowed: use a share in [0, 1)"),
    ("pyro_bnn.train", "model.likelihood=poisson", "model.likelihood=poisson is not allowed: use one of"),
    ("pyro_bnn.app.evaluate", "", "run_dir is missing: python -m pyro_bnn.app.evaluate run_dir=<the run dir"),
    ("pyro_bnn.app.evaluate", "run_dir={tmp}/nonexistent", "no saved posterior at"),
    ("pyro_bnn.app.evaluate", "run_dir={run} dataset=mnist", "evaluate reads it under the run's data.root"),
    ("pyro_bnn.app.evaluate", "run_dir={run} num_samples=0", "num_samples=0: use a whole number >= 1"),
    ("pyro_bnn.app.evaluate", "run_dir={run} num_samples=1000000", "num_samples=1000000: use a whole number from 1 to 10000"),
    ("pyro_bnn.app.evaluate", "run_dir={run} dataset=toy_regression", "pick a data set of the same shape"),
    ("pyro_bnn.app.explain", "--run-dir {tmp}/nonexistent", "no saved posterior at"),
    ("pyro_bnn.app.explain", "--run-dir {tmp}/truncated", "is not a readable pyro_bnn saved posterior"),
    ("pyro_bnn.app.summarize", "{tmp}/nonexistent", "no sweep dir at"),
]

#: (case, message)
LIBRARY = [
    ("fit(num_particles=0)", "num_particles=0: use a whole number >= 1"),
    ("fit(kl_weight='0.5')", "kl_weight='0.5': pass a number (the KL weight of every step) or a KLWeight"),
    ("fit(empty loader)", "loader yields no batches: its dataset is empty"),
    ("fit(generator)", "loader is an iterator (generator), which is spent after one pass"),
    ("fit(labels of shape (B, 1))", "the targets y of loader have shape (50, 1) for 50 inputs"),
    ("fit(label 12 of 10 classes)", "the labels y of loader hold the class 12, but the model has 10 outputs"),
    ("fit(label -1)", "the labels y of loader hold the class -1, but the model has 10 outputs"),
    ("fit(float64 inputs)", "the inputs x of loader have dtype torch.float64, the model's weights torch.float32"),
    ("fit(uint8 inputs)", "the inputs x of loader have dtype torch.uint8"),
    ("fit(NaN inputs)", "the inputs x of loader hold NaN or inf values"),
    ("fit(lr=8: the loss explodes)", "the loss exploded to"),
    ("BayesianCNN(num_classes=0)", "num_classes=0: use a whole number >= 1"),
    ("BayesianCNN(num_classes=-3)", "num_classes=-3: use a whole number >= 1"),
    ("BayesianCNN(prior='normal')", "prior='normal': pass a Prior object, e.g. pyro_bnn.NormalPrior(1.0)"),
    ("evaluate(NaN inputs)", "the evaluation inputs x hold NaN or inf values"),
    ("evaluate(num_samples=2.5)", "num_samples=2.5: use a whole number >= 1"),
    ("evaluate(a broken posterior)", "the network's outputs are NaN or inf under"),
    ("load_data('mnist', download=True), offline", "could not be downloaded to"),
    ("HeteroscedasticGaussian(min_scale=0)", "likelihood min_scale=0: the noise sd's floor must be a finite number > 0"),
    ("BayesianMLP(3, 1, likelihood=HeteroscedasticGaussian())", "HeteroscedasticGaussian reads 2 network output(s) per example"),
    ("load_data('uci', name='yacht'), not there", "no UCI data set 'yacht' under"),
    ("fit(num_particles=100000)", "num_particles=100000: use a whole number from 1 to 1000"),
    ("auto_lowrank(rank=10**6)", "rank=1000000: use a whole number from 1 to 1000"),
]
