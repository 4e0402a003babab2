"""Samplers added as files: each module here is one sampler of `zoo_jax.sampling.draw`, named for the
file. It exposes `draw(key, embeddings [N, D], scores [N], num_samples, config) -> [S, D]` (config:
sampling.DRAW_DEFAULTS completed by the caller's config.sampler) and `DEFAULTS`, a dict of the config
fields it adds with their defaults. The built-in samplers live in zoo_jax/sampling.py."""
