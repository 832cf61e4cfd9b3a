"""The Hydra experiment around the library: configs (``conf/``), their schemas and validation, objects built
from a config, the run directory, the ``train`` / ``evaluate`` / ``explain`` / ``summarize`` entry points,
and the reports, plots and progress they write. The only part of pyro_bnn that imports hydra, omegaconf,
matplotlib or tqdm.
"""
