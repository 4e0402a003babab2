"""zoo_jax.weights.chunks: per-layer pad-chunks against a numpy reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo_jax import weights

from param_trees import ARCHS, random_params


def numpy_chunks(params, size):
  """Per layer: kernel raveled then bias, zero-padded to a multiple of size, cut in rows."""
  tree = params["params"]
  names = sorted(tree, key=lambda n: (n.startswith("dense"), int(n.split("_")[1])))
  values, mask, layer = [], [], []
  for i, name in enumerate(names):
    w = np.concatenate([np.ravel(tree[name]["kernel"]), np.ravel(tree[name]["bias"])])
    n = -(-w.size // size)
    padded = np.zeros(n * size, np.float32)
    padded[: w.size] = w
    values.append(padded.reshape(n, size))
    mask.append((np.arange(n * size) < w.size).reshape(n, size))
    layer.append(np.full(n, i))
  return np.concatenate(values), np.concatenate(mask), np.concatenate(layer)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", [7, 64])
def test_chunks_match_numpy_reference_and_round_trip(arch, size):
  params = random_params(arch)
  chunks, spec = weights.chunk(params, chunk_size=size)
  values, mask, layer = numpy_chunks(params, size)
  np.testing.assert_array_equal(chunks.values, values)
  np.testing.assert_array_equal(chunks.mask, mask)
  np.testing.assert_array_equal(chunks.layer, layer)
  for i in range(len(spec.layers)):  # positions count the chunks within each layer
    np.testing.assert_array_equal(chunks.position[layer == i], np.arange((layer == i).sum()))
  back = weights.unchunk(chunks, spec)
  for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("arch", ARCHS)
def test_chunks_never_mix_layers_and_masks_are_prefixes(arch):
  params = random_params(arch)
  chunks, spec = weights.chunk(params, chunk_size=10)
  layer, mask = np.asarray(chunks.layer), np.asarray(chunks.mask)
  for i, layer_spec in enumerate(spec.layers):
    rows = layer == i
    assert rows.sum() == -(-layer_spec.size // 10)
    assert mask[rows].sum() == layer_spec.size
    # Only the layer's last chunk has padding, at its end.
    assert mask[rows][:-1].all()
    last = mask[rows][-1]
    assert last[: last.sum()].all() and not last[last.sum() :].any()
  assert np.all(np.diff(layer) >= 0)


def test_batched_equals_vmap_and_round_trips():
  population = random_params("cnn_s", (3,))
  batched, spec = weights.chunk(population, chunk_size=32)
  vmapped, _ = jax.jit(jax.vmap(functools.partial(weights.chunk, chunk_size=32)))(population)
  for a, b in zip(batched, vmapped):
    np.testing.assert_array_equal(a, b)
  back = weights.unchunk(batched.values, spec)
  for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(population)):
    np.testing.assert_array_equal(x, y)


def test_any_tree_can_be_chunked():
  params = {
    "params": {
      "conv_0": {"kernel": jnp.arange(12.0).reshape(1, 2, 2, 3), "bias": jnp.ones(3)},
      "BatchNorm_0": {"scale": jnp.ones(3), "bias": jnp.zeros(3)},
    }
  }
  chunks, spec = weights.chunk(params, chunk_size=4)
  assert chunks.values.shape == (4 + 2, 4)
  for x, y in zip(jax.tree.leaves(weights.unchunk(chunks, spec)), jax.tree.leaves(params)):
    np.testing.assert_array_equal(x, y)
  with pytest.raises(ValueError, match="chunk_size"):
    weights.chunk(params, chunk_size=0)
