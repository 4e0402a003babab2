"""Encoders over a zoo's weights: hyperrep.py, sne.py and baselines.py hold the networks; methods/
holds how `zoo_jax.encode` fits and uses each (one file per `config.method`, see methods/__init__.py)."""

# Where an encode workdir keeps seed 0's trained encoder (hyperrep.save), for zoo_jax.sample.
ENCODER_DIR = "encoder"
