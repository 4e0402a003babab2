"""zoo_jax.weights.symmetry: permuting hidden units leaves the network's function unchanged."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo_jax import weights
from zoo_jax.models import get_model

INPUTS = {"cnn_s": (28, 28, 1), "cnn_l": (32, 32, 3), "mlp": (28, 28, 1)}
CASES = [("cnn_s", "tanh"), ("cnn_l", "tanh"), ("mlp", "tanh"), ("cnn_s", "relu")]


@functools.cache
def images(arch):
  """64 real MNIST test digits, normalised; for CNN-l padded to 32x32 and repeated to 3 channels.

  Falls back to deterministic random inputs while zoo_jax.data or its data is missing.
  """
  try:
    from zoo_jax import data

    dataset = data.load("mnist5k", "test")
    x = (dataset.images[:64] / 255.0 - dataset.mean[0]) / dataset.std[0]
  except (ImportError, FileNotFoundError) as e:
    print(f"Using random inputs: {e}")
    x = np.random.default_rng(0).standard_normal((64, 28, 28, 1))
  if arch == "cnn_l":
    x = np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)
  return jnp.asarray(x, jnp.float32)


@functools.cache
def model_and_params(arch, activation, seed=0):
  model = get_model(arch, activation=activation, init="kaiming_uniform")
  # An rbg key: the same kaiming_uniform init, but threefry's random kernels on multi-axis
  # shapes take seconds to compile on XLA:CPU.
  params = jax.jit(model.init)(jax.random.key(seed, impl="rbg"), images(arch)[:1])
  return model, params


def leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("arch, activation", CASES)
def test_random_permutations_keep_the_function(arch, activation):
  model, params = model_and_params(arch, activation)
  apply = jax.jit(model.apply)
  x = images(arch)
  logits = apply(params, x)
  spec = weights.make_spec(params)
  for seed in range(3):
    permuted = weights.random_permutation(jax.random.key(seed), params)
    np.testing.assert_allclose(apply(permuted, x), logits, atol=1e-5, rtol=1e-5)
    before, after = params["params"], permuted["params"]
    for layer in spec.layers[:-1]:  # every hidden layer's units moved
      assert not np.array_equal(before[layer.name]["kernel"], after[layer.name]["kernel"])
    last = spec.layers[-1].name  # the classes stay in place
    np.testing.assert_array_equal(before[last]["bias"], after[last]["bias"])


@pytest.mark.parametrize("arch, activation", CASES[:3])
def test_canonical_form_is_shared_by_the_orbit(arch, activation):
  model, params = model_and_params(arch, activation)
  canonical = weights.canonicalize(params)
  x = images(arch)
  np.testing.assert_allclose(
    model.apply(canonical, x), model.apply(params, x), atol=1e-5, rtol=1e-5
  )
  for seed in range(3):
    permuted = weights.random_permutation(jax.random.key(seed), params)
    for a, b in zip(leaves(weights.canonicalize(permuted)), leaves(canonical)):
      np.testing.assert_array_equal(a, b)


def test_flatten_link_moves_the_rows_a_channel_owns():
  _, params = model_and_params("cnn_s", "tanh")
  spec = weights.make_spec(params)
  perms = weights.sample_permutations(jax.random.key(7), spec)
  permuted = weights.permute(params, perms)
  perm = np.asarray(perms[2])  # conv_2's 4 channels, each owning 3 * 3 rows of dense_0
  dense_perm = np.asarray(perms[3])  # dense_0's own 20 units
  old = np.asarray(params["params"]["dense_0"]["kernel"])
  new = np.asarray(permuted["params"]["dense_0"]["kernel"])
  for s in range(9):
    for j in range(4):
      np.testing.assert_array_equal(new[s * 4 + j], old[s * 4 + perm[j]][dense_perm])
  # conv_2's kernel: inputs follow conv_1's permutation (HWIO axis 2), outputs its own.
  old_conv = np.asarray(params["params"]["conv_2"]["kernel"])
  np.testing.assert_array_equal(
    permuted["params"]["conv_2"]["kernel"], old_conv[:, :, perms[1]][..., perm]
  )
  # The inverse permutation restores the original.
  inverse = tuple(jnp.argsort(p) for p in perms)
  for a, b in zip(leaves(weights.permute(permuted, inverse)), leaves(params)):
    np.testing.assert_array_equal(a, b)


def test_population_batched_equals_vmap_and_loop():
  _, params = model_and_params("mlp", "tanh")
  population = jax.tree.map(lambda x: x + jnp.arange(4.0).reshape((4,) + (1,) * x.ndim), params)
  key = jax.random.key(3)
  batched = weights.random_permutation(key, population)
  keys = jax.random.split(key, 4)
  vmapped = jax.jit(jax.vmap(weights.random_permutation))(keys, population)
  for a, b in zip(leaves(batched), leaves(vmapped)):
    np.testing.assert_array_equal(a, b)
  for i in range(4):
    alone = weights.random_permutation(keys[i], jax.tree.map(lambda x: x[i], population))
    for a, b in zip(leaves(alone), leaves(jax.tree.map(lambda x: x[i], batched))):
      np.testing.assert_array_equal(a, b)
  # Canonicalising a batch: each permuted model maps back to its original's canonical form.
  for a, b in zip(leaves(weights.canonicalize(batched)), leaves(weights.canonicalize(population))):
    np.testing.assert_array_equal(a, b)


def _dense(n_in, n_out):
  return {"kernel": jnp.ones((n_in, n_out)), "bias": jnp.zeros(n_out)}


@pytest.mark.parametrize(
  "params, message",
  [
    (
      {
        "dense_0": _dense(4, 3),
        "dense_1": _dense(3, 2),
        "LayerNorm_0": {"scale": jnp.ones(3), "bias": jnp.zeros(3)},
      },
      "'LayerNorm_0'.*normalisation",
    ),
    ({"dense_0": _dense(4, 3), "dense_1": _dense(5, 2)}, "'dense_1' has 5 inputs.*'dense_0' has 3"),
    (
      {
        "conv_0": {"kernel": jnp.ones((3, 3, 1, 4)), "bias": jnp.zeros(4)},
        "conv_1": {"kernel": jnp.ones((3, 3, 5, 4)), "bias": jnp.zeros(4)},
      },
      "'conv_1' has 5 input channels",
    ),
    (
      {
        "conv_0": {"kernel": jnp.ones((3, 3, 1, 4)), "bias": jnp.zeros(4)},
        "dense_0": _dense(10, 2),
      },
      "'dense_0' has 10 inputs.*not a multiple of the 4 channels",
    ),
    (
      {"dense_0": _dense(4, 3), "residual_1": _dense(3, 3), "dense_2": _dense(3, 2)},
      "'residual_1'.*residual",
    ),
    (
      {
        "ResNetBlock_0": {"Conv_0": {"kernel": jnp.ones((3, 3, 1, 4)), "bias": jnp.zeros(4)}},
        "Dense_0": _dense(4, 2),
      },
      "'ResNetBlock_0/Conv_0'",
    ),
  ],
)
def test_unsupported_structure_is_named(params, message):
  with pytest.raises(ValueError, match=message):
    weights.random_permutation(jax.random.key(0), params)
  with pytest.raises(ValueError, match=message):
    weights.canonicalize(params)


def test_conv_after_dense_is_named():
  params = {
    "dense_0": _dense(4, 3),
    "conv_1": {"kernel": jnp.ones((1, 1, 3, 2)), "bias": jnp.zeros(2)},
  }
  spec = weights.make_spec(params, layer_order=["dense_0", "conv_1"])
  with pytest.raises(ValueError, match="'conv_1' is a conv after the dense layer 'dense_0'"):
    weights.random_permutation(jax.random.key(0), params, spec)


def test_wrong_number_of_permutations():
  params = {"dense_0": _dense(4, 3), "dense_1": _dense(3, 2)}
  with pytest.raises(ValueError, match="Expected 1 permutations"):
    weights.permute(params, (jnp.arange(3), jnp.arange(2)))
