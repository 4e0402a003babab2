"""zoo_jax.weights.tokens: neuron tokens against a per-unit numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo_jax import weights

from param_trees import ARCHS, random_params


def numpy_tokens(params):
  """One row per output unit: kernel[..., unit] raveled (h, w, c_in), then the bias; zero-padded."""
  tree = params["params"]
  names = sorted(tree, key=lambda n: (n.startswith("dense"), int(n.split("_")[1])))
  rows, layer_ids, positions = [], [], []
  for i, name in enumerate(names):
    kernel, bias = np.asarray(tree[name]["kernel"]), np.asarray(tree[name]["bias"])
    for unit in range(kernel.shape[-1]):
      rows.append(np.append(kernel[..., unit].ravel(), bias[unit]))
      layer_ids.append(i)
      positions.append(unit)
  d = max(len(r) for r in rows)
  values = np.zeros((len(rows), d), np.float32)
  mask = np.zeros((len(rows), d), bool)
  for t, r in enumerate(rows):
    values[t, : len(r)] = r
    mask[t, : len(r)] = True
  return values, mask, np.array(layer_ids), np.array(positions)


@pytest.mark.parametrize("arch", ARCHS)
def test_tokens_match_numpy_reference_and_round_trip(arch):
  params = random_params(arch)
  tokens, spec = weights.tokenize(params)
  values, mask, layer, position = numpy_tokens(params)
  np.testing.assert_array_equal(tokens.values, values)
  np.testing.assert_array_equal(tokens.mask, mask)
  np.testing.assert_array_equal(tokens.layer, layer)
  np.testing.assert_array_equal(tokens.position, position)
  assert tokens.values.shape == (sum(l.units for l in spec.layers), weights.token_dim(spec))
  assert int(tokens.mask.sum()) == spec.size
  np.testing.assert_array_equal(np.asarray(tokens.values)[~mask], 0)
  back = weights.detokenize(tokens, spec)
  for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
    np.testing.assert_array_equal(x, y)


def test_token_shapes_of_the_zoo_architectures():
  # CNN-s: 8 + 6 + 4 + 20 + 10 units; the longest token is conv_1's 5 * 5 * 8 weights + bias.
  assert weights.tokenize(random_params("cnn_s"))[0].values.shape == (48, 201)
  assert weights.tokenize(random_params("cnn_l"))[0].values.shape == (93, 289)
  assert weights.tokenize(random_params("mlp"))[0].values.shape == (58, 785)


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_equals_vmap_equals_loop(arch):
  population = random_params(arch, (3,))
  batched, spec = weights.tokenize(population)
  vmapped, _ = jax.jit(jax.vmap(weights.tokenize))(population)
  for a, b in zip(batched, vmapped):
    np.testing.assert_array_equal(a, b)
  for i in range(3):
    one = jax.tree.map(lambda x: x[i], population)
    np.testing.assert_array_equal(batched.values[i], numpy_tokens(one)[0])
  back = jax.jit(jax.vmap(weights.detokenize, in_axes=(0, None)))(batched.values, spec)
  for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(population)):
    np.testing.assert_array_equal(x, y)


def test_wider_tokens_pad_and_round_trip():
  params = random_params("cnn_s")
  tokens, spec = weights.tokenize(params, dim=256)
  narrow, _ = weights.tokenize(params)
  assert tokens.values.shape == (48, 256)
  np.testing.assert_array_equal(tokens.values[:, :201], narrow.values)
  np.testing.assert_array_equal(tokens.values[:, 201:], 0)
  back = weights.detokenize(tokens.values, spec)
  for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
    np.testing.assert_array_equal(x, y)
  with pytest.raises(ValueError, match="token_dim=0 must be >= 1"):
    weights.tokenize(params, dim=0)


def test_narrow_tokens_split_long_units_into_consecutive_pieces():
  """dim 52 < 201: each conv_1 unit becomes 4 tokens, its natural token cut in 52-entry pieces in
  order; shorter units stay one token; round trip; a permutation moves a unit's pieces together."""
  params = random_params("cnn_s")
  tokens, spec = weights.tokenize(params, dim=52)
  natural, _ = weights.tokenize(params)
  assert weights.tokens.pieces(spec, 52) == (1, 4, 1, 1, 1)
  assert tokens.values.shape == (8 + 6 * 4 + 4 + 20 + 10, 52)
  layer = np.asarray(tokens.layer)
  np.testing.assert_array_equal(np.bincount(layer), [8, 24, 4, 20, 10])
  np.testing.assert_array_equal(np.asarray(tokens.position)[layer == 1], np.arange(24))
  conv_1 = np.asarray(tokens.values)[layer == 1].reshape(6, 4 * 52)
  np.testing.assert_array_equal(
    conv_1[:, :201], np.asarray(natural.values)[np.asarray(natural.layer) == 1]
  )
  np.testing.assert_array_equal(conv_1[:, 201:], 0)
  assert np.asarray(tokens.mask).sum() == spec.size
  for x, y in zip(
    jax.tree.leaves(weights.detokenize(tokens.values, spec)), jax.tree.leaves(params)
  ):
    np.testing.assert_array_equal(x, y)
  permuted = weights.random_permutation(jax.random.key(0), params, spec)
  moved = np.asarray(weights.tokenize(permuted, spec, dim=52)[0].values)[layer == 1].reshape(
    6, 4 * 52
  )
  perm = [
    int(np.flatnonzero((conv_1[:, 200] == b))[0]) for b in moved[:, 200]
  ]  # biases identify units
  assert sorted(perm) == list(range(6))
  for j, i in enumerate(perm):  # the unit's 4 pieces moved together (its inputs permuted within it)
    np.testing.assert_array_equal(np.sort(moved[j, :200]), np.sort(conv_1[i, :200]))


def test_layers_without_units_are_rejected():
  params = {
    "dense_0": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)},
    "BatchNorm_0": {"scale": jnp.ones(3), "bias": jnp.ones(3)},
  }
  with pytest.raises(ValueError, match="'BatchNorm_0'.*normalisation"):
    weights.tokenize(params)
