"""zoo_jax.weights.augment: keyed noise and random erasing."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo_jax import weights
from zoo_jax.models import get_model


@functools.cache
def population_tokens(n=8):
  """Tokens [n, 48, 201] of n CNN-s models with seeded normal weights."""
  shapes = jax.eval_shape(get_model("cnn_s").init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  rng = np.random.default_rng(0)
  params = jax.tree.map(
    lambda s: jnp.asarray(rng.standard_normal((n,) + s.shape, np.float32)), shapes
  )
  return params, weights.tokenize(params)[0]


@pytest.mark.parametrize("mode", ["block", "scatter"])
def test_erasing_is_keyed_and_touches_only_real_entries(mode):
  _, tokens = population_tokens()
  erase = jax.jit(functools.partial(weights.random_erase, mode=mode))
  a, b, c = (erase(jax.random.key(seed), tokens) for seed in (0, 0, 1))
  np.testing.assert_array_equal(a.values, b.values)
  assert not np.array_equal(a.values, c.values)
  values, erased, mask = np.asarray(tokens.values), np.asarray(a.values), np.asarray(tokens.mask)
  changed = values != erased
  assert not changed[~mask].any()  # padding untouched (it stays 0)
  np.testing.assert_array_equal(erased[changed], 0)
  np.testing.assert_array_equal(a.mask, tokens.mask)  # the other fields pass through
  # The batch equals a vmap over split keys: each model draws its own erasure.
  vmapped = jax.vmap(erase)(jax.random.split(jax.random.key(0), 8), tokens)
  np.testing.assert_array_equal(vmapped.values, a.values)


@pytest.mark.parametrize("mode", ["block", "scatter"])
def test_erasing_scale_probability_and_shape(mode):
  shape = (48, 201)
  keys = jax.random.split(jax.random.key(0), 200)
  masks = jax.jit(jax.vmap(lambda k, p: weights.erasing_mask(k, shape, mode=mode, p=p), (0, None)))
  always = np.asarray(masks(keys, 1.0))
  fraction = always.mean(axis=(1, 2))
  assert fraction.min() >= 0.02 and fraction.max() <= 0.33
  assert fraction.max() - fraction.min() > 0.2  # the scale is drawn, not fixed
  applied = np.asarray(masks(keys, 0.5)).any(axis=(1, 2)).mean()
  assert 0.35 < applied < 0.65  # the default p = 0.5 of the hyper-representation papers
  assert not np.asarray(masks(keys, 0.0)).any()
  if mode == "block":  # a single contiguous rectangle
    for m in always[:20]:
      rows, cols = np.nonzero(m)
      assert m.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)


def test_erasing_rejects_unknown_mode():
  with pytest.raises(ValueError, match="'stripes'"):
    weights.erasing_mask(jax.random.key(0), (4, 4), mode="stripes")


@pytest.mark.parametrize("noise", [weights.add_noise, weights.multiply_noise])
def test_noise_on_params_and_tokens(noise):
  params, tokens = population_tokens()
  fn = jax.jit(noise)
  a, b, c = (fn(jax.random.key(seed), params, 0.1) for seed in (0, 0, 1))
  for x, y, z, p in zip(*map(jax.tree.leaves, (a, b, c, params))):
    np.testing.assert_array_equal(x, y)
    assert not np.array_equal(x, z) and x.shape == p.shape
  residual = np.concatenate(
    [np.ravel(x - p) for x, p in zip(jax.tree.leaves(a), jax.tree.leaves(params))]
  )
  if noise is weights.multiply_noise:
    residual /= np.concatenate([np.ravel(p) for p in jax.tree.leaves(params)])
  assert abs(residual.std() - 0.1) < 0.005 and abs(residual.mean()) < 0.005
  noisy = fn(jax.random.key(0), tokens, 0.1)  # Tokens: padding stays 0
  mask = np.asarray(tokens.mask)
  np.testing.assert_array_equal(np.asarray(noisy.values)[~mask], 0)
  assert (np.asarray(noisy.values)[mask] != np.asarray(tokens.values)[mask]).all()
  zero = fn(jax.random.key(0), params, 0.0)
  for x, p in zip(jax.tree.leaves(zero), jax.tree.leaves(params)):
    np.testing.assert_array_equal(x, p)


def test_per_model_noise_scale_under_vmap():
  params, _ = population_tokens()
  sigmas = jnp.linspace(0.0, 0.7, 8)
  keys = jax.random.split(jax.random.key(0), 8)
  noisy = jax.jit(jax.vmap(weights.add_noise))(keys, params, sigmas)
  flat_noisy, _ = weights.flatten(noisy)
  flat_params, _ = weights.flatten(params)
  np.testing.assert_allclose(np.std(flat_noisy - flat_params, axis=1), sigmas, atol=0.03)
