"""Neural baselines for weight-space learning: an MLP on flat weights, DeepSets on neuron tokens.

Both follow the encoders' contract: `module.init(key, batch)` and
`module.apply(variables, batch, train=...) -> [B, num_outputs]` (pass a 'dropout' rng
with train=True when dropout_rate > 0). Inputs:

  FlatMLP   jax.Array [B, n]: flat weights of one architecture in `weights.flatten` order,
            standardised per entry by `standardize` with statistics of the training models
            (`fit_standardizer`). Weight entries differ in scale by orders of magnitude.
  DeepSets  weights.Tokens [B, T, d]: neuron tokens (`weights.tokenize`, or `make_tokenizer`
            from flat vectors). Mixed architectures share one batch when tokenised to a
            common width d and token count T (`make_tokenizer(spec, dim, num_tokens)`,
            `pad_tokens`); padding tokens have an all-False mask.

`Zoo.flat` concatenates leaves in pytree order (bias before kernel), not `weights.flatten`
order: use `weights.flatten(zoo.params(ids, epoch), spec)[0]`.
Gradient-boosted trees and ridge probes on StatNN features live in `zoo_jax.encoders.properties`.
"""

from typing import Callable, NamedTuple, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo_jax import weights
from zoo_jax.weights.spec import WeightSpec

POOLINGS = ("mean", "sum")


class Standardizer(NamedTuple):
  """Per-entry statistics of flat weights over the training models."""

  mean: jax.Array  # [n]
  std: jax.Array  # [n]


def fit_standardizer(flat: jax.Array, min_std: float = 1e-6) -> Standardizer:
  """Mean and std of each entry over the models of flat [B, n]; std floored at min_std
  (entries that are constant across the zoo, e.g. untrained biases at 0.01)."""
  chex.assert_rank(flat, 2)
  return Standardizer(mean=jnp.mean(flat, axis=0), std=jnp.maximum(jnp.std(flat, axis=0), min_std))


def standardize(flat: jax.Array, standardizer: Standardizer) -> jax.Array:
  """(flat - mean) / std, flat [B, n] -> [B, n]."""
  chex.assert_shape(flat, (None, standardizer.mean.shape[0]))
  return (flat - standardizer.mean) / standardizer.std


class FlatMLP(nn.Module):
  """MLP on (standardised) flat weight vectors [B, n] -> [B, num_outputs].

  Sees no symmetry: each entry is its own feature, so it needs one architecture per model.
  """

  num_outputs: int
  hidden: Sequence[int] = (256, 256)
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, flat: jax.Array, train: bool = False) -> jax.Array:
    chex.assert_rank(flat, 2)
    x = flat
    for features in self.hidden:
      x = nn.gelu(nn.Dense(features)(x))
      x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    return nn.Dense(self.num_outputs)(x)


class DeepSets(nn.Module):
  """DeepSets over neuron tokens: rho(pool_t phi(token_t + layer embedding)) -> [B, num_outputs].

  The output does not change when the tokens (with their layer ids) are reordered. That
  is more invariance than the network's true symmetry: permuting the units of a hidden
  layer preserves the function only together with the matching permutation of the next
  layer's inputs, while DeepSets also ignores any reordering of one layer's tokens alone,
  which changes the function. And it is not invariant to the true symmetry itself: that
  reorders the entries inside the next layer's tokens, which phi reads as a vector.
  The token width d is fixed at init (phi's first kernel): tokenise every architecture to
  the same d. Layer ids must be < max_layers.
  """

  num_outputs: int
  phi_features: Sequence[int] = (128, 128)
  rho_features: Sequence[int] = (128,)
  max_layers: int = 16
  pooling: str = "mean"  # over the real tokens: "mean" or "sum"
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, tokens: weights.Tokens, train: bool = False) -> jax.Array:
    if self.pooling not in POOLINGS:
      raise ValueError(f"Unknown pooling {self.pooling!r}; allowed values: {list(POOLINGS)}.")
    chex.assert_rank(tokens.values, 3)
    chex.assert_equal_shape([tokens.values, tokens.mask])
    chex.assert_shape(tokens.layer, tokens.values.shape[:2])
    mask = tokens.mask.astype(bool)
    present = jnp.any(mask, axis=-1)  # [B, T]: padding tokens have no real entry
    # The mask is an input too: a padded entry and a zero weight look alike otherwise.
    x = jnp.concatenate(
      [jnp.where(mask, tokens.values, 0.0), mask.astype(tokens.values.dtype)], axis=-1
    )
    h = nn.Dense(self.phi_features[0])(x) + nn.Embed(self.max_layers, self.phi_features[0])(
      tokens.layer
    )
    h = nn.gelu(h)
    for features in self.phi_features[1:]:
      h = nn.gelu(nn.Dense(features)(h))
    weight = present.astype(h.dtype)[..., None]
    pooled = jnp.sum(jnp.where(weight > 0, h, 0.0), axis=1)
    if self.pooling == "mean":
      pooled = pooled / jnp.maximum(jnp.sum(weight, axis=1), 1.0)
    x = pooled
    for features in self.rho_features:
      x = nn.gelu(nn.Dense(features)(x))
      x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    return nn.Dense(self.num_outputs)(x)


def _pad_tokens_to(tokens: weights.Tokens, num_tokens: int, dim: int) -> weights.Tokens:
  """Pads [B, T, d] tokens with zero entries to width dim and padding tokens to num_tokens."""
  t, d = tokens.values.shape[-2:]
  if num_tokens < t or dim < d:
    raise ValueError(
      f"Cannot pad tokens [T={t}, d={d}] to num_tokens={num_tokens}, dim={dim}; "
      f"pass at least the largest architecture's sizes."
    )
  rows, cols = (0, num_tokens - t), (0, dim - d)
  return weights.Tokens(
    values=jnp.pad(tokens.values, ((0, 0), rows, cols)),
    mask=jnp.pad(tokens.mask, ((0, 0), rows, cols)),
    layer=jnp.pad(tokens.layer, ((0, 0), rows)),
    position=jnp.pad(tokens.position, ((0, 0), rows)),
  )


def pad_tokens(
  tokens_list: Sequence[weights.Tokens], num_tokens: int | None = None, dim: int | None = None
) -> weights.Tokens:
  """Concatenates tokens ([T_i, d_i] or [B_i, T_i, d_i]) of possibly different architectures.

  Returns Tokens [sum B_i, T, d]; T and d default to the largest T_i and d_i.
  """
  batched = [jax.tree.map(lambda x: x[None], t) if t.values.ndim == 2 else t for t in tokens_list]
  for t in batched:
    chex.assert_rank(t.values, 3)
  num_tokens = max(t.values.shape[1] for t in batched) if num_tokens is None else num_tokens
  dim = max(t.values.shape[2] for t in batched) if dim is None else dim
  padded = [_pad_tokens_to(t, num_tokens, dim) for t in batched]
  return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *padded)


def make_tokenizer(
  spec: WeightSpec, dim: int | None = None, num_tokens: int | None = None
) -> Callable[[jax.Array], weights.Tokens]:
  """A jitted `flat [B, n] -> Tokens [B, num_tokens, dim]` for one architecture.

  dim defaults to `weights.token_dim(spec)`, num_tokens to the architecture's unit count;
  pass the largest over the architectures that share a batch.
  """
  dim = weights.token_dim(spec) if dim is None else dim
  units = int(weights.token_layout(spec, dim).index.shape[0])
  num_tokens = units if num_tokens is None else num_tokens
  if num_tokens < units:
    raise ValueError(
      f"num_tokens={num_tokens} is fewer than the {units} units of this architecture."
    )

  @jax.jit
  def tokenizer(flat: jax.Array) -> weights.Tokens:
    chex.assert_shape(flat, (None, spec.size))
    tokens, _ = weights.tokenize(weights.unflatten(flat, spec), spec, dim=dim)
    return _pad_tokens_to(tokens, num_tokens, dim)

  return tokenizer
