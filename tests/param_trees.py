"""Params trees of the zoo architectures for the weights tests (seeded normals, no init)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax.models import get_model

ARCHS = ("cnn_s", "cnn_l", "mlp")
INPUTS = {"cnn_s": (28, 28, 1), "cnn_l": (32, 32, 3), "mlp": (28, 28, 1)}


@functools.cache
def param_shapes(arch):
  return jax.eval_shape(get_model(arch).init, jax.random.key(0), jnp.zeros((1,) + INPUTS[arch]))


def random_params(arch, batch=(), seed=0):
  """The architecture's params tree filled with seeded normals (shapes from eval_shape, no init)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda s: jnp.asarray(rng.standard_normal(batch + s.shape, np.float32)), param_shapes(arch)
  )


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.shape == y.shape and x.dtype == y.dtype
    np.testing.assert_array_equal(x, y)
