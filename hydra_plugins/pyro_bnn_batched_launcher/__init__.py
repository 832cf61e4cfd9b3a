"""pyro_bnn's Hydra launcher ``batched`` (``launcher=batched``): a multirun's jobs trained as one batch of models."""
