"""zoo_jax.encoders.methods.sne: set invariances, padding, mixed architectures, logit invariance."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo_jax import weights
from zoo_jax.encoders.methods import sne
from zoo_jax.models import get_model

from param_trees import random_params

CHUNK = 64
TOL = dict(rtol=1e-5, atol=1e-5)


def flat_models(arch, n, seed):
  vector, spec = weights.flatten(random_params(arch, (n,), seed=seed))
  return vector, spec


@functools.cache
def zoo():
  """Two CNN-s and two CNN-l models (flat vectors and specs); C is CNN-l's chunk count."""
  small, small_spec = flat_models("cnn_s", 2, 0)
  large, large_spec = flat_models("cnn_l", 2, 1)
  return small, small_spec, large, large_spec, sne.num_chunks_of(large_spec, CHUNK)


def mixed_batch():
  small, small_spec, large, large_spec, c = zoo()
  return sne.pad_chunks(
    [sne.make_chunker(small_spec, CHUNK, c)(small), sne.make_chunker(large_spec, CHUNK, c)(large)]
  )


@functools.cache
def model_and_variables():
  model = sne.SNE(num_outputs=3, chunk_size=CHUNK, d_model=16, element_dim=8, num_heads=2)
  # Parameter shapes do not depend on B or C, so one init serves every batch below.
  return model, jax.jit(model.init)(jax.random.key(0), mixed_batch())


@functools.cache
def apply_fn():
  return jax.jit(model_and_variables()[0].apply)


def test_chunker_matches_weights_chunk_and_pads():
  small, small_spec, large, large_spec, c = zoo()
  chunks, _ = weights.chunk(weights.unflatten(small, small_spec), small_spec, chunk_size=CHUNK)
  n = chunks.values.shape[1]
  batch = sne.make_chunker(small_spec, CHUNK, n + 5)(small)
  np.testing.assert_array_equal(batch.values[:, :n], chunks.values)
  np.testing.assert_array_equal(batch.mask[:, :n], chunks.mask)
  np.testing.assert_array_equal(batch.layer[:, :n], chunks.layer)
  assert batch.chunk_mask[:, :n].all() and not batch.chunk_mask[:, n:].any()
  assert not batch.mask[:, n:].any() and not batch.values[:, n:].any()
  # pad_chunks over weights.Chunks (one unbatched model) gives the chunker's rows.
  one, _ = weights.chunk(weights.unflatten(small[1], small_spec), small_spec, chunk_size=CHUNK)
  both = sne.pad_chunks([batch, one])
  for got, want in zip(both, batch):
    np.testing.assert_array_equal(got[:2], want)
    np.testing.assert_array_equal(got[2], want[1])
  with pytest.raises(ValueError, match="num_chunks"):
    sne.make_chunker(large_spec, CHUNK, c - 1)


def test_permuted_chunker_keeps_the_function_and_changes_the_chunks():
  small, small_spec, *_ = zoo()
  n = sne.num_chunks_of(small_spec, CHUNK)
  permuted = sne.make_permuted_chunker(small_spec, CHUNK, n + 3)(jax.random.key(1), small)
  original = sne.make_chunker(small_spec, CHUNK)(small)
  assert not np.array_equal(permuted.values[:, :n], original.values)
  params = weights.unflatten(small, small_spec)
  back = weights.unchunk(permuted.values[:, :n], small_spec)
  net = get_model("cnn_s")
  x = jax.random.normal(jax.random.key(2), (3, 28, 28, 1))
  for i in range(2):
    one = lambda tree: jax.tree.map(lambda a: a[i], tree)
    # Logits of N(0, 1) weights reach ~10: float32 sums in another order differ by ~1e-5.
    np.testing.assert_allclose(
      net.apply(one(back), x), net.apply(one(params), x), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("pooling", sne.POOLINGS)
def test_set_pool_ignores_order_and_masked_entries(pooling):
  x = jax.random.normal(jax.random.key(9), (2, 3, 6, 4))
  mask = jnp.arange(6) < jnp.array([[6, 2, 0], [1, 5, 3]])[..., None]  # one empty set
  pool = sne.SetPool(pooling, num_heads=2)
  variables = jax.jit(pool.init)(jax.random.key(0), x, mask)
  apply = jax.jit(pool.apply)
  out = apply(variables, x, mask)
  assert out.shape == (2, 3, 4) and np.isfinite(out).all()
  order = jax.random.permutation(jax.random.key(1), 6)
  garbage = jnp.where(mask[..., None], x, 1e3)
  np.testing.assert_allclose(apply(variables, garbage[..., order, :], mask[..., order]), out, **TOL)
  if pooling == "mean":
    m = np.asarray(mask, np.float32)[..., None]
    np.testing.assert_allclose(out, (np.asarray(x) * m).sum(-2) / np.maximum(m.sum(-2), 1), **TOL)


def test_output_is_invariant_to_element_order_inside_chunks():
  model, variables = model_and_variables()
  batch = mixed_batch()
  # An independent random order for every chunk, applied to values and mask alike.
  order = jnp.argsort(jax.random.uniform(jax.random.key(3), batch.values.shape), axis=-1)
  shuffled = batch._replace(
    values=jnp.take_along_axis(batch.values, order, axis=-1),
    mask=jnp.take_along_axis(batch.mask, order, axis=-1),
  )
  assert not np.array_equal(shuffled.values, batch.values)
  apply = apply_fn()
  np.testing.assert_allclose(apply(variables, shuffled), apply(variables, batch), **TOL)


def test_padding_chunks_are_ignored_whatever_they_hold():
  model, variables = model_and_variables()
  small, small_spec, *_ = zoo()
  batch = sne.make_chunker(small_spec, CHUNK)(small[:1])
  padded = sne.make_chunker(small_spec, CHUNK, batch.values.shape[1] + 7)(small[:1])
  # Fill the padding chunks with garbage: only chunk_mask says they are not real.
  keys = jax.random.split(jax.random.key(4), 2)
  fake = ~padded.chunk_mask
  padded = padded._replace(
    values=jnp.where(
      fake[..., None], jax.random.normal(keys[0], padded.values.shape), padded.values
    ),
    mask=padded.mask | fake[..., None],
    layer=jnp.where(fake, jax.random.randint(keys[1], padded.layer.shape, 0, 5), padded.layer),
  )
  apply = apply_fn()
  np.testing.assert_allclose(apply(variables, padded), apply(variables, batch), **TOL)


def test_mixed_architecture_batch_equals_each_model_alone():
  model, variables = model_and_variables()
  small, small_spec, large, large_spec, _ = zoo()
  apply = apply_fn()
  mixed = apply(variables, mixed_batch())
  assert mixed.shape == (4, 3) and np.isfinite(mixed).all()
  embedding = jax.jit(functools.partial(model.apply, method=sne.SNE.embed))(
    variables, mixed_batch()
  )
  assert embedding.shape == (4, 16) and np.isfinite(embedding).all()
  # One model alone, at its own architecture's chunk count.
  alone_small = apply(variables, sne.make_chunker(small_spec, CHUNK)(small[1:]))
  alone_large = apply(variables, sne.make_chunker(large_spec, CHUNK)(large[1:]))
  np.testing.assert_allclose(mixed[1:2], alone_small, **TOL)
  np.testing.assert_allclose(mixed[3:], alone_large, **TOL)


def positive_counts_per_layer(params, batch):
  """Per layer, how many weights are positive: exactly invariant to hidden-unit permutations."""
  positive = jnp.sum(batch.mask & (batch.values > 0), axis=-1) * batch.chunk_mask
  return jnp.einsum("bcl,bc->bl", jax.nn.one_hot(batch.layer, 8), positive.astype(jnp.float32))


def test_logit_invariance_loss_zero_when_invariant_positive_for_sne_at_init():
  small, small_spec, large, large_spec, c = zoo()
  key = jax.random.key(5)
  permuted = sne.pad_chunks(
    [
      sne.make_permuted_chunker(small_spec, CHUNK, c)(key, small),
      sne.make_permuted_chunker(large_spec, CHUNK, c)(key, large),
    ]
  )
  batch = mixed_batch()
  assert not np.array_equal(permuted.values, batch.values)
  assert sne.logit_invariance_loss(positive_counts_per_layer, None, batch, permuted) == 0.0
  _, variables = model_and_variables()
  assert sne.logit_invariance_loss(apply_fn(), variables, batch, permuted) > 1e-8


def test_training_with_the_invariance_term_reduces_it():
  model, variables = model_and_variables()
  small, small_spec = flat_models("cnn_s", 4, 6)
  batch = sne.make_chunker(small_spec, CHUNK)(small)
  permuted_chunker = sne.make_permuted_chunker(small_spec, CHUNK)
  optimizer = optax.adam(3e-3)
  loss_fn = jax.jit(lambda v, permuted: sne.logit_invariance_loss(model.apply, v, batch, permuted))

  @jax.jit
  def step(variables, opt_state, permuted):
    grads = jax.grad(loss_fn)(variables, permuted)
    updates, opt_state = optimizer.update(grads, opt_state, variables)
    return optax.apply_updates(variables, updates), opt_state

  held_out = [permuted_chunker(key, small) for key in jax.random.split(jax.random.key(7), 3)]
  evaluate = lambda v: np.mean([loss_fn(v, permuted) for permuted in held_out])
  before = evaluate(variables)
  opt_state = optimizer.init(variables)
  for key in jax.random.split(jax.random.key(8), 10):  # a fresh permutation every step
    variables, opt_state = step(variables, opt_state, permuted_chunker(key, small))
  after = evaluate(variables)
  assert np.isfinite(after) and after < 0.5 * before, (before, after)


def test_positions_make_element_and_chunk_order_matter_and_scaling_divides_by_layer_std():
  """element_positions / chunk_positions: a weight's place in its layer changes the embedding;
  input scaling is the chunk of flat / layer std."""
  params = random_params("cnn_s", batch=(2,))
  flat, spec = weights.flatten(params)
  batch = sne.make_chunker(spec, 16)(flat)
  swapped = batch._replace(values=batch.values[:, :, ::-1], mask=batch.mask[:, :, ::-1])
  order = jnp.concatenate(
    [jnp.array([1, 0]), jnp.arange(2, batch.values.shape[1])]
  )  # first two chunks: layer 0
  assert int(batch.layer[0, 0]) == int(batch.layer[0, 1]) == 0
  moved = batch._replace(values=batch.values[:, order], mask=batch.mask[:, order])  # positions stay
  for fields, changed in (
    ({}, ()),
    ({"element_positions": True}, ("swapped",)),
    ({"chunk_positions": True}, ("moved",)),
  ):
    model = sne.SNE(num_outputs=3, chunk_size=16, d_model=16, element_dim=8, num_heads=2, **fields)
    variables = model.init(jax.random.key(0), batch)
    out = model.apply(variables, batch)
    for name, other in (("swapped", swapped), ("moved", moved)):
      same = np.allclose(out, model.apply(variables, other), atol=1e-5)
      assert same == (name not in changed), (fields, name)
  scale = sne.layer_scales(flat, spec)
  np.testing.assert_allclose(
    scale[0], np.std(np.asarray(flat)[:, : spec.layers[0].size]), rtol=1e-5
  )
  scaled = sne.make_chunker(spec, 16, scale=scale)(flat)
  np.testing.assert_allclose(
    scaled.values, batch.values / np.asarray(scale)[np.asarray(batch.layer)][..., None], rtol=1e-6
  )


def test_model_scaling_sees_each_layer_at_unit_rms_and_its_scale_only_through_the_log_rms():
  """model_scaling: multiplying one model's layer by c changes its embedding only through the
  embedded log-RMS (zeroed, the embedding is unchanged); padding chunks still do not matter."""
  params = random_params("cnn_s", batch=(2,))
  flat, spec = weights.flatten(params)
  chunker = sne.make_chunker(spec, 16, num_chunks=sne.num_chunks_of(spec, 16) + 3)
  batch = chunker(flat)
  layer = spec.layers[1]
  scaled = chunker(flat.at[0, layer.offset : layer.offset + layer.size].multiply(50.0))
  model = sne.SNE(
    num_outputs=3, chunk_size=16, d_model=16, element_dim=8, num_heads=2, model_scaling=True
  )
  variables = model.init(jax.random.key(0), batch)
  embed = lambda v, b: np.asarray(model.apply(v, b, method=sne.SNE.embed))
  base, other = embed(variables, batch), embed(variables, scaled)
  assert not np.allclose(base[0], other[0], atol=1e-4)  # the scale is seen...
  np.testing.assert_allclose(base[1], other[1], atol=1e-5)
  blind = jax.tree.map(lambda x: x, variables)
  blind["params"]["layer_scale_in"] = jax.tree.map(
    jnp.zeros_like, variables["params"]["layer_scale_in"]
  )
  np.testing.assert_allclose(
    embed(blind, batch), embed(blind, scaled), atol=1e-4
  )  # ...only through log-RMS
  junk = batch._replace(values=jnp.where(batch.chunk_mask[..., None], batch.values, 7.0))
  np.testing.assert_allclose(embed(variables, junk), base, atol=1e-5)


def test_trim_padding_cuts_a_batch_to_its_largest_model_and_keeps_the_output():
  model, variables = model_and_variables()
  small, small_spec, large, large_spec, c = zoo()
  own = sne.num_chunks_of(small_spec, CHUNK)
  padded = jax.tree.map(np.asarray, sne.make_chunker(small_spec, CHUNK, c)(small))
  trimmed, extra = sne.trim_padding((padded, np.ones(2)))  # any pytree; other leaves untouched
  assert trimmed.values.shape == (2, own, CHUNK) and trimmed.chunk_mask.all()
  np.testing.assert_array_equal(extra, np.ones(2))
  apply = apply_fn()
  np.testing.assert_allclose(apply(variables, trimmed), apply(variables, padded), **TOL)
  # A batch that holds a CNN-l model keeps CNN-l's chunks.
  mixed = jax.tree.map(np.asarray, mixed_batch())
  assert sne.trim_padding(mixed).values.shape[1] == c
