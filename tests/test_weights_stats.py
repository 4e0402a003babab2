"""zoo_jax.weights.stats: StatNN features and layer-wise normalisation against numpy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo_jax import weights
from zoo_jax.models import get_model

INPUTS = {"cnn_s": (28, 28, 1), "cnn_l": (32, 32, 3), "mlp": (28, 28, 1)}


@functools.cache
def population(arch, n=4):
  """n models of `arch` with seeded weights, a different scale per layer (as in a trained zoo)."""
  shapes = jax.eval_shape(get_model(arch).init, jax.random.key(0), jnp.zeros((1,) + INPUTS[arch]))
  rng = np.random.default_rng(0)
  draw = lambda s: (
    rng.uniform(-1, 1) + rng.uniform(0.1, 2) * rng.standard_normal((n,) + s.shape, np.float32)
  )
  return jax.tree.map(lambda s: jnp.asarray(draw(s), jnp.float32), shapes)


def numpy_statnn(params):
  tree = params["params"]
  names = sorted(tree, key=lambda n: (n.startswith("dense"), int(n.split("_")[1])))
  features = []
  for name in names:
    for p in ("kernel", "bias"):
      x = np.asarray(tree[name][p], np.float64).ravel()
      features += [x.mean(), np.var(x), *np.percentile(x, [0, 25, 50, 75, 100])]
  return np.array(features)


@pytest.mark.parametrize("arch", ["cnn_s", "cnn_l", "mlp"])
def test_statnn_matches_numpy(arch):
  zoo = population(arch)
  features = weights.statnn_features(zoo)
  spec = weights.make_spec(zoo)
  names = weights.statnn_feature_names(spec)
  assert features.shape == (4, 7 * 2 * len(spec.layers)) == (4, len(names))
  assert names[:3] == (
    f"{spec.layers[0].name}/kernel/mean",
    f"{spec.layers[0].name}/kernel/var",
    f"{spec.layers[0].name}/kernel/p0",
  )
  for i in range(4):
    expected = numpy_statnn(jax.tree.map(lambda x: x[i], zoo))
    np.testing.assert_allclose(features[i], expected, rtol=1e-5, atol=1e-5)


def test_statnn_vmap_equals_batched():
  zoo = population("cnn_s")
  vmapped = jax.jit(jax.vmap(weights.statnn_features))(zoo)
  np.testing.assert_allclose(vmapped, weights.statnn_features(zoo), rtol=1e-6, atol=1e-6)


def test_percentiles_interpolate_like_numpy():
  # Sizes whose percentile positions fall between entries (n - 1 not divisible by 4).
  for n in (2, 3, 6, 10):
    kernel = np.random.default_rng(n).standard_normal((n, 1)).astype(np.float32)
    params = {"dense_0": {"kernel": jnp.asarray(kernel), "bias": jnp.arange(1.0, 2.0)}}
    got = np.asarray(weights.statnn_features(params))[2:7]
    expected = np.percentile(kernel, [0, 25, 50, 75, 100])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("arch", ["cnn_s", "mlp"])
def test_layer_variances_from_params_and_tokens_agree_with_numpy(arch):
  zoo = population(arch)
  spec = weights.make_spec(zoo)
  per_layer = weights.layer_variances(zoo)
  tree = zoo["params"]
  expected = [
    np.var(
      np.concatenate(
        [np.asarray(tree[l.name][p], np.float64).reshape(4, -1) for p in ("kernel", "bias")], axis=1
      )
    )
    for l in spec.layers
  ]
  np.testing.assert_allclose(per_layer, expected, rtol=1e-5)
  tokens, _ = weights.tokenize(zoo)
  from_tokens = weights.token_layer_variances(tokens, len(spec.layers))
  np.testing.assert_allclose(from_tokens, per_layer, rtol=1e-5)
  scale = weights.per_token(per_layer, tokens.layer)
  assert scale.shape == (4, tokens.values.shape[1], 1)
  np.testing.assert_array_equal(scale[0, :, 0], np.asarray(per_layer)[np.asarray(tokens.layer[0])])
  normalised = tokens.values / scale  # broadcasts against [P, T, d]
  assert normalised.shape == tokens.values.shape


def test_novelty_counts_permuted_and_perturbed_copies_as_copies_and_new_models_as_new():
  """A permuted copy of a reference model is at 0, a small perturbation near 0, an unrelated
  model near the reference's own spacing; a model's other epochs are not its neighbours."""
  zoo = population("cnn_s", n=6)
  reference, spec = weights.flatten(zoo)
  reference = np.array(reference)
  groups = np.array(["a", "a", "b", "c", "d", "e"])  # rows 0 and 1: one model at two epochs
  reference[1] = reference[0] + 1e-3 * np.random.default_rng(1).standard_normal(spec.size)
  model_0 = weights.unflatten(jnp.asarray(reference[0]), spec)
  permuted = weights.random_permutation(jax.random.key(3), model_0, spec)
  rng = np.random.default_rng(2)
  new = np.stack(
    [
      np.asarray(weights.flatten(permuted, spec)[0]),
      reference[2] + 0.05 * rng.standard_normal(spec.size),
      rng.uniform(-1, 1) + 1.0 * rng.standard_normal(spec.size),
    ]
  )
  assert not np.allclose(new[0], reference[0])  # the permutation moved weights
  score = weights.novelty(new, reference, groups, spec)
  assert score.shape == (3,)
  assert score[0] < 1e-2  # permuted copy
  assert score[1] < 0.1  # perturbed copy
  assert 0.5 < score[2] < 2  # a new model: as far as the zoo's models are from each other
  with pytest.raises(ValueError, match="two groups"):
    weights.novelty(new, reference[:2], groups[:2], spec)


def test_novelty_counts_a_perturbed_copy_in_another_unit_order_as_a_copy():
  """A reference model permuted at random, then moved by noise, is near 0: canonical sorting
  alone can reorder its units differently once the weights moved, the anchor's matching cannot."""
  zoo = population("cnn_s", n=6)
  reference, spec = weights.flatten(zoo)
  reference = np.asarray(reference)
  groups = np.arange(len(reference))
  model = weights.unflatten(jnp.asarray(reference[3]), spec)
  rng = np.random.default_rng(0)
  copies, unrelated = [], []
  for i in range(4):
    permuted = weights.random_permutation(jax.random.key(10 + i), model, spec)
    moved = np.asarray(weights.flatten(permuted, spec)[0])
    copies.append(moved + 0.05 * np.std(moved) * rng.standard_normal(spec.size))
    unrelated.append(rng.permutation(reference[3]))  # the same values, no structure kept
  score = weights.novelty(np.stack(copies + unrelated), reference, groups, spec)
  assert np.all(score[:4] < 0.15), score
  assert np.all(score[4:] > 0.5), score
