"""zoo_jax.encoders.baselines: FlatMLP and DeepSets (token invariance, mixed architectures)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo_jax import weights
from zoo_jax.encoders import baselines

from param_trees import random_params

TOL = dict(rtol=1e-5, atol=1e-5)


@functools.cache
def zoo():
  """Three CNN-s and two CNN-l models as flat vectors, with their specs."""
  small, small_spec = weights.flatten(random_params("cnn_s", (3,), seed=0))
  large, large_spec = weights.flatten(random_params("cnn_l", (2,), seed=1))
  return small, small_spec, large, large_spec


@functools.cache
def mixed_tokens():
  small, small_spec, large, large_spec = zoo()
  dim = max(weights.token_dim(small_spec), weights.token_dim(large_spec))
  num_tokens = weights.token_layout(large_spec, dim).index.shape[0]
  return baselines.pad_tokens(
    [
      baselines.make_tokenizer(small_spec, dim, num_tokens)(small),
      baselines.make_tokenizer(large_spec, dim, num_tokens)(large),
    ]
  )


@functools.cache
def deep_sets():
  model = baselines.DeepSets(num_outputs=3, phi_features=(32, 32), rho_features=(32,))
  return model, jax.jit(model.init)(jax.random.key(0), mixed_tokens()), jax.jit(model.apply)


def test_standardize_matches_numpy():
  small, *_ = zoo()
  stats = baselines.fit_standardizer(small)
  x = np.asarray(small, np.float64)
  want = (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)
  np.testing.assert_allclose(baselines.standardize(small, stats), want, rtol=1e-4, atol=1e-4)


def test_flat_mlp_shapes_batch_independence_and_dropout():
  small, *_ = zoo()
  x = baselines.standardize(small, baselines.fit_standardizer(small))
  model = baselines.FlatMLP(num_outputs=4, hidden=(32,), dropout_rate=0.5)
  variables = model.init(jax.random.key(0), x)
  out = model.apply(variables, x)
  assert out.shape == (3, 4) and np.isfinite(out).all()
  np.testing.assert_allclose(model.apply(variables, x[1:2]), out[1:2], **TOL)
  dropped = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(dropped, out)


def test_tokenizer_matches_weights_tokenize_and_pads():
  small, small_spec, *_ = zoo()
  tokens, _ = weights.tokenize(weights.unflatten(small, small_spec), small_spec)
  t, d = tokens.values.shape[1:]
  padded = baselines.make_tokenizer(small_spec, d + 3, t + 2)(small)
  np.testing.assert_array_equal(padded.values[:, :t, :d], tokens.values)
  np.testing.assert_array_equal(padded.mask[:, :t, :d], tokens.mask)
  np.testing.assert_array_equal(padded.layer[:, :t], tokens.layer)
  assert not padded.mask[:, t:].any() and not padded.mask[:, :, d:].any()
  with pytest.raises(ValueError, match="num_tokens"):
    baselines.make_tokenizer(small_spec, d, t - 1)


def test_deep_sets_is_invariant_to_token_order():
  _, variables, apply = deep_sets()
  tokens = mixed_tokens()
  keys = jax.random.split(jax.random.key(2), tokens.values.shape[0])
  order = jax.vmap(lambda k: jax.random.permutation(k, tokens.values.shape[1]))(keys)  # [B, T]
  shuffled = jax.tree.map(
    lambda x: jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), axis=1),
    tokens,
  )
  assert not np.array_equal(shuffled.values, tokens.values)
  np.testing.assert_allclose(apply(variables, shuffled), apply(variables, tokens), **TOL)


def test_deep_sets_mixed_batch_equals_each_model_alone_and_ignores_padding():
  _, variables, apply = deep_sets()
  small, small_spec, large, large_spec = zoo()
  mixed = apply(variables, mixed_tokens())
  assert mixed.shape == (5, 3) and np.isfinite(mixed).all()
  # Alone: the module's token width d, but the architecture's own token count T.
  dim = mixed_tokens().values.shape[-1]
  alone_small = apply(variables, baselines.make_tokenizer(small_spec, dim)(small[1:2]))
  alone_large = apply(variables, baselines.make_tokenizer(large_spec, dim)(large[1:]))
  np.testing.assert_allclose(mixed[1:2], alone_small, **TOL)
  np.testing.assert_allclose(mixed[4:], alone_large, **TOL)
  # Padding tokens holding garbage values (mask False) change nothing.
  tokens = mixed_tokens()
  garbage = tokens._replace(
    values=jnp.where(tokens.mask, tokens.values, 1e3),
    layer=jnp.where(tokens.mask.any(-1), tokens.layer, 3),
  )
  np.testing.assert_allclose(apply(variables, garbage), mixed, **TOL)


@pytest.mark.parametrize("name", ["flat_mlp", "deep_sets"])
def test_a_few_adam_steps_fit_a_weight_statistic(name):
  small, small_spec, *_ = zoo()
  target = jnp.stack([small.mean(1), small.std(1)], axis=1)  # [B, 2]
  if name == "flat_mlp":
    model = baselines.FlatMLP(num_outputs=2, hidden=(32,))
    batch = baselines.standardize(small, baselines.fit_standardizer(small))
  else:
    model = baselines.DeepSets(num_outputs=2, phi_features=(16,), rho_features=(16,))
    batch = baselines.make_tokenizer(small_spec)(small)
  variables = jax.jit(model.init)(jax.random.key(0), batch)
  optimizer = optax.adam(1e-3)
  loss_fn = lambda v: jnp.mean((model.apply(v, batch, train=True) - target) ** 2)

  @jax.jit
  def step(variables, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(variables)
    updates, opt_state = optimizer.update(grads, opt_state, variables)
    return optax.apply_updates(variables, updates), opt_state, loss

  opt_state = optimizer.init(variables)
  losses = []
  for _ in range(30):
    variables, opt_state, loss = step(variables, opt_state)
    losses.append(float(loss))
  assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses
