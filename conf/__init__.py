"""Hydra configs of pyro_bnn (a package so that installed console scripts find them as pkg://pyro_bnn.conf)."""
