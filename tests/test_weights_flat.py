"""zoo_jax.weights.flat and .spec: flat vectors, the spec and its JSON form."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo_jax import weights

from param_trees import ARCHS, random_params, assert_trees_equal


@pytest.mark.parametrize(
  "arch, batch, wrapped",
  [(arch, batch, True) for arch in ARCHS for batch in [(), (3,)]]
  + [("cnn_s", (2, 3), True), ("cnn_s", (), False), ("mlp", (3,), False)],
)
def test_round_trip_exact(arch, batch, wrapped):
  params = random_params(arch, batch)
  params = params if wrapped else params["params"]
  vector, spec = weights.flatten(params)
  assert vector.shape == batch + (spec.size,)
  assert spec.wrapped == wrapped
  assert spec.size == sum(x.size for x in jax.tree.leaves(params)) // max(1, int(np.prod(batch)))
  assert_trees_equal(weights.unflatten(vector, spec), params)


@pytest.mark.parametrize("arch", ARCHS)
def test_order_is_layer_then_kernel_then_bias(arch):
  params = random_params(arch)
  vector, spec = weights.flatten(params)
  tree = params["params"]
  names = sorted(tree, key=lambda n: (n.startswith("dense"), int(n.split("_")[1])))
  expected = np.concatenate([np.ravel(tree[n][p]) for n in names for p in ("kernel", "bias")])
  np.testing.assert_array_equal(vector, expected)
  assert spec.layer_names == tuple(names)
  assert [layer.kind for layer in spec.layers] == [n.split("_")[0] for n in names]


def test_order_ignores_dict_order_and_sorts_numbers():
  rng = np.random.default_rng(0)
  layer = lambda *shape: {
    "kernel": rng.standard_normal(shape, np.float32),
    "bias": rng.standard_normal(shape[-1:], np.float32),
  }
  params = {
    "dense_10": layer(3, 2),
    "dense_2": layer(4, 3),
    "conv_1": layer(2, 2, 5, 4),
    "conv_0": layer(3, 3, 1, 5),
  }
  spec = weights.make_spec(params)
  assert spec.layer_names == ("conv_0", "conv_1", "dense_2", "dense_10")
  custom = weights.make_spec(params, layer_order=["conv_1", "conv_0", "dense_10", "dense_2"])
  assert custom.layer_names == ("conv_1", "conv_0", "dense_10", "dense_2")
  assert_trees_equal(
    weights.unflatten(weights.flatten(params, custom)[0], custom), jax.tree.map(jnp.asarray, params)
  )
  with pytest.raises(ValueError, match="missing.*conv_0"):
    weights.make_spec(params, layer_order=["conv_1", "dense_10", "dense_2"])


@pytest.mark.parametrize("arch", ARCHS)
def test_spec_json_round_trip(arch):
  _, spec = weights.flatten(random_params(arch))
  text = json.dumps(spec.to_dict())
  assert weights.WeightSpec.from_dict(json.loads(text)) == spec
  assert weights.WeightSpec.from_json(spec.to_json()) == spec
  assert hash(weights.WeightSpec.from_json(spec.to_json())) == hash(spec)


@pytest.mark.parametrize("arch", ARCHS)
def test_vmap_and_jit_equal_batched_and_loop(arch):
  population = random_params(arch, (4,))
  batched, spec = weights.flatten(population)
  vmapped, vspec = jax.vmap(weights.flatten)(population)
  jitted, jspec = jax.jit(weights.flatten)(population)
  loop = np.stack([weights.flatten(jax.tree.map(lambda x: x[i], population))[0] for i in range(4)])
  assert spec == vspec == jspec
  for v in (vmapped, jitted):
    np.testing.assert_array_equal(v, batched)
  np.testing.assert_array_equal(loop, batched)
  back = jax.jit(jax.vmap(weights.unflatten, in_axes=(0, None)))(batched, spec)
  assert_trees_equal(back, population)


def test_dtypes_preserved():
  params = {
    "dense_0": {"kernel": jnp.ones((3, 2), jnp.bfloat16), "bias": jnp.zeros((2,), jnp.float32)}
  }
  vector, spec = weights.flatten(params)
  assert vector.dtype == jnp.float32 and spec.dtype == "float32"
  assert_trees_equal(weights.unflatten(vector, spec), params)


def test_errors_name_the_problem():
  params = random_params("mlp")
  _, spec = weights.flatten(params)
  bad = jax.tree.map(lambda x: x, params)
  bad["params"]["dense_1"]["kernel"] = jnp.zeros((33, 16))
  with pytest.raises(ValueError, match="dense_1/kernel"):
    weights.flatten(bad, spec)
  missing = {"params": {k: v for k, v in params["params"].items() if k != "dense_2"}}
  with pytest.raises(ValueError, match="missing.*dense_2"):
    weights.flatten(missing, spec)
  with pytest.raises(ValueError, match="batch_ndim"):
    weights.make_spec({"w": {"kernel": jnp.zeros((3, 2))}})
  with pytest.raises(AssertionError, match="25818"):  # chex shape check at the boundary
    weights.unflatten(jnp.zeros((spec.size + 1,)), spec)
