"""Sampler "uniform": uniform draws in the zoo's bounding box, the baseline; also the box draw
(in_box) of the neighbourhood samplers and the reference's U(-1, 1)^D of "uniform_reference"."""

import functools

import jax
import jax.numpy as jnp

from zoo_jax.samplers import _checks

DEFAULTS = {}


@functools.partial(jax.jit, static_argnames="num_samples")
def in_box(key: jax.Array, low: jax.Array, high: jax.Array, num_samples: int) -> jax.Array:
  """[S, dims] uniform draws in the box [low, high) (low, high: [dims])."""
  return jax.random.uniform(key, (num_samples, low.shape[0]), low.dtype, low, high)


def uniform_sample(key: jax.Array, embeddings, num_samples: int) -> jax.Array:
  """Uniform samples in the bounding box of all embeddings: the baseline sampler.

  Args:
    key: PRNG key. embeddings: [N, D]. num_samples: S >= 1.
  Returns:
    [S, D] float32, each dimension uniform in [min, max) of the data.
  """
  embeddings = jnp.asarray(_checks.check_embeddings(embeddings), jnp.float32)
  num_samples = _checks.check_num_samples(num_samples)
  return in_box(key, embeddings.min(axis=0), embeddings.max(axis=0), num_samples)


def uniform_reference_sample(key: jax.Array, dim: int, num_samples: int) -> jax.Array:
  """U(-1, 1)^dim: the reference code's uniform baseline, blind to where the zoo lies. [S, dim]."""
  num_samples = _checks.check_num_samples(num_samples)
  low = -jnp.ones((int(dim),), jnp.float32)
  return in_box(key, low, -low, num_samples)


def draw(key: jax.Array, embeddings, scores, num_samples: int, config) -> jax.Array:
  """[S, D] uniform samples in the bounding box of embeddings [N, D] (scores, config unused)."""
  del scores, config
  return uniform_sample(key, embeddings, num_samples)
