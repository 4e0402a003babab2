"""Sampler "kde": a per-dimension Gaussian KDE over all models; also the KDE math of "kde30" and
"kde30_reference" (kde_sample, kde_reference_sample)."""

import functools

import chex
import jax
import jax.numpy as jnp

from zoo_jax.samplers import _checks

# Generative hyper-representations (2022): KDE bandwidth 0.002.
DEFAULT_BANDWIDTH = 0.002

DEFAULTS = {"bandwidth": DEFAULT_BANDWIDTH}


@functools.partial(jax.jit, static_argnames="num_samples")
def _kde(
  key: jax.Array, embeddings: jax.Array, num_samples: int, bandwidth: jax.Array
) -> jax.Array:
  index_key, noise_key = jax.random.split(key)
  num_models, dim = embeddings.shape
  # Each dimension picks its own data point: the dimensions are independent KDEs.
  rows = jax.random.randint(index_key, (num_samples, dim), 0, num_models)
  picked = embeddings[rows, jnp.arange(dim)]
  return picked + bandwidth * jax.random.normal(noise_key, (num_samples, dim), embeddings.dtype)


def kde_sample(
  key: jax.Array, embeddings, num_samples: int, bandwidth: float = DEFAULT_BANDWIDTH
) -> jax.Array:
  """Samples of a per-dimension Gaussian KDE fitted to the embeddings.

  Each latent dimension is its own 1-D KDE (as in the 2022 paper): per sample and per
  dimension, pick a data point's value at random and add N(0, bandwidth^2) noise. The
  marginals follow the data; correlations between dimensions are not kept.

  Args:
    key: PRNG key. embeddings: [N, D]. num_samples: S >= 1. bandwidth: >= 0.
  Returns:
    [S, D] float32.
  """
  return _checked_kde(_kde, key, embeddings, num_samples, bandwidth)


@functools.partial(jax.jit, static_argnames="num_samples")
def _kde_reference(
  key: jax.Array, embeddings: jax.Array, num_samples: int, bandwidth: jax.Array
) -> jax.Array:
  index_key, noise_key = jax.random.split(key)
  rows = jax.random.randint(index_key, (num_samples,), 0, embeddings.shape[0])
  shift = bandwidth * jax.random.normal(noise_key, (num_samples, 1), embeddings.dtype)
  return embeddings[rows] + shift


def kde_reference_sample(
  key: jax.Array, embeddings, num_samples: int, bandwidth: float = DEFAULT_BANDWIDTH
) -> jax.Array:
  """The KDE sampler as the reference code runs it: a whole embedding plus a shared shift.

  The generative hyper-representation code fits sklearn's KernelDensity to each latent
  dimension and samples every dimension with the same random_state, so each dimension picks
  the same data row and adds the same N(0, bandwidth^2) draw: a sample is one data embedding
  moved by one scalar along (1, ..., 1). Unlike `kde_sample`, it keeps each embedding whole.

  Args:
    key: PRNG key. embeddings: [N, D]. num_samples: S >= 1. bandwidth: >= 0.
  Returns:
    [S, D] float32.
  """
  return _checked_kde(_kde_reference, key, embeddings, num_samples, bandwidth)


def _checked_kde(kde, key, embeddings, num_samples, bandwidth) -> jax.Array:
  """Checks the arguments of a KDE sampler, runs it, checks the shape of its [S, D] samples."""
  embeddings = jnp.asarray(_checks.check_embeddings(embeddings), jnp.float32)
  num_samples = _checks.check_num_samples(num_samples)
  samples = kde(key, embeddings, num_samples, jnp.float32(_checks.check_bandwidth(bandwidth)))
  chex.assert_shape(samples, (num_samples, embeddings.shape[1]))
  return samples


def draw(key: jax.Array, embeddings, scores, num_samples: int, config) -> jax.Array:
  """[S, D] per-dimension KDE samples over all embeddings [N, D] (scores [N] unused)."""
  del scores
  return kde_sample(key, embeddings, num_samples, config["bandwidth"])
