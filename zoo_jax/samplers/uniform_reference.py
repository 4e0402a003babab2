"""Sampler "uniform_reference": U(-1, 1)^D, the reference code's baseline (uniform.py)."""

import jax
import numpy as np

from zoo_jax.samplers import uniform

DEFAULTS = {}


def draw(key: jax.Array, embeddings, scores, num_samples: int, config) -> jax.Array:
  """[S, D] draws of U(-1, 1)^D; only the width D of embeddings [N, D] is read."""
  del scores, config
  return uniform.uniform_reference_sample(key, np.shape(embeddings)[1], num_samples)
