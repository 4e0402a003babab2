"""Keyed augmentations of weights, as in the hyper-representation papers (Schürholt et al., 2021).

Gaussian noise (additive and multiplicative) on params pytrees or token arrays, and
random erasing of tokens. The permutation augmentation is `symmetry.random_permutation`.
All functions are pure, jittable and vmappable; for a population either vmap over split
keys or pass the batch directly (see each docstring for what a batched call draws).
"""

import math
from typing import Any, TypeVar

import chex
import jax
import jax.numpy as jnp

from zoo_jax.weights.tokens import Tokens

X = TypeVar("X")

# Random erasing as in the hyper-representation papers: applied with probability 0.5,
# erasing 2-33% of the token matrix. The aspect-ratio range (block rows / columns) is
# torchvision RandomErasing's default (Zhong et al., 2020).
ERASE_PROBABILITY = 0.5
ERASE_SCALE = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)
ERASE_MODES = ("block", "scatter")


def add_noise(key: jax.Array, x: X, sigma: float | jax.Array, mask: Any = None) -> X:
  """x + sigma * N(0, 1), entry-wise, where `mask` is True (everywhere if None).

  Args:
    key: PRNG key.
    x: an array, a params pytree, or Tokens (whose own mask is then used).
    sigma: noise scale (a scalar; may be traced, e.g. per model under vmap).
    mask: None, or bools with x's structure; entries outside it stay unchanged (padding).
  Returns:
    x's structure and shapes; every entry gets independent noise, batched or not.
  """
  return _noise(key, x, mask, lambda v, eps: v + sigma * eps)


def multiply_noise(key: jax.Array, x: X, sigma: float | jax.Array, mask: Any = None) -> X:
  """x * (1 + sigma * N(0, 1)), entry-wise, where `mask` is True; otherwise as `add_noise`."""
  return _noise(key, x, mask, lambda v, eps: v * (1 + sigma * eps))


def erasing_mask(
  key: jax.Array,
  shape: tuple[int, int],
  *,
  mode: str = "block",
  p: float | jax.Array = ERASE_PROBABILITY,
  scale: tuple[float, float] = ERASE_SCALE,
  ratio: tuple[float, float] = ERASE_RATIO,
) -> jax.Array:
  """Which entries of one [T, d] token matrix random erasing would zero: bool [T, d].

  With probability p (else nothing; p may be traced), a fraction s ~ U(scale) of the
  T * d entries is chosen: "block" takes one contiguous rectangle with log-uniform aspect
  ratio (rows / columns) in `ratio`, its area kept within scale (for d >= 4); "scatter"
  takes exactly round(s * T * d) entries uniformly at random.
  """
  if mode not in ERASE_MODES:
    raise ValueError(f"Unknown erasing mode {mode!r}; allowed values: {list(ERASE_MODES)}.")
  if not 0 < scale[0] <= scale[1] <= 1:
    raise ValueError(f"Erasing scale must satisfy 0 < low <= high <= 1, got {scale}.")
  rows, cols = shape
  area = rows * cols
  # One draw for the scalars (apply, scale, aspect ratio, top, left): fewer random kernels
  # to compile than one call per quantity.
  u = jax.random.uniform(key, (5,))
  apply = u[0] < p
  target = (scale[0] + (scale[1] - scale[0]) * u[1]) * area
  if mode == "scatter":
    count = jnp.clip(jnp.round(target), math.ceil(scale[0] * area), math.floor(scale[1] * area))
    scores = jax.random.uniform(jax.random.fold_in(key, 1), (area,))
    # The count-th smallest score is the threshold: exactly `count` entries fall below it.
    sorted_scores = jnp.concatenate([jnp.sort(scores), jnp.full((1,), jnp.inf)])
    threshold = sorted_scores[count.astype(jnp.int32)]
    return apply & (scores < threshold).reshape(shape)
  log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(log_low + (log_high - log_low) * u[2])
  height = jnp.clip(jnp.round(jnp.sqrt(target * aspect)), jnp.ceil(target / cols), rows)
  # Width from the height, so height * width stays within [scale[0], scale[1]] * area.
  width = jnp.clip(
    jnp.round(target / height),
    jnp.maximum(1, jnp.ceil(scale[0] * area / height)),
    jnp.minimum(cols, jnp.floor(scale[1] * area / height)),
  )
  top = jnp.floor(u[3] * (rows - height + 1))
  left = jnp.floor(u[4] * (cols - width + 1))
  r = jnp.arange(rows)[:, None]
  c = jnp.arange(cols)[None, :]
  block = (r >= top) & (r < top + height) & (c >= left) & (c < left + width)
  return apply & block


def random_erase(
  key: jax.Array,
  tokens: X,
  mask: jax.Array | None = None,
  *,
  mode: str = "block",
  p: float | jax.Array = ERASE_PROBABILITY,
  scale: tuple[float, float] = ERASE_SCALE,
  ratio: tuple[float, float] = ERASE_RATIO,
) -> X:
  """Random erasing of tokens: entries chosen by `erasing_mask` and real (mask True) become 0.

  Args:
    key: PRNG key.
    tokens: Tokens, or token values [*B, T, d].
    mask: real entries, broadcastable to [*B, T, d]; None uses Tokens.mask, or all entries.
    mode, p, scale, ratio: see `erasing_mask`.
  Returns:
    The same type and shapes. With batch axes B, model b uses key
    `jax.random.split(key, prod(B))[b]`, so the result equals a vmap over the split keys.
  """
  values = tokens.values if isinstance(tokens, Tokens) else tokens
  if mask is None:
    mask = tokens.mask if isinstance(tokens, Tokens) else jnp.ones(values.shape, bool)
  if values.ndim < 2:
    raise ValueError(f"Token values must be [*B, T, d], got shape {values.shape}.")
  batch_shape, shape = values.shape[:-2], values.shape[-2:]
  mask = jnp.broadcast_to(mask, values.shape)
  chex.assert_type(mask, bool)

  def one(k, v, m):
    erase = erasing_mask(k, shape, mode=mode, p=p, scale=scale, ratio=ratio) & m
    return jnp.where(erase, jnp.zeros_like(v), v)

  fn = one
  keys = key
  if batch_shape:
    keys = jax.random.split(key, math.prod(batch_shape)).reshape(batch_shape + key.shape)
    for _ in batch_shape:
      fn = jax.vmap(fn)
  erased = fn(keys, values, mask)
  return tokens._replace(values=erased) if isinstance(tokens, Tokens) else erased


def _noise(key: jax.Array, x: Any, mask: Any, combine) -> Any:
  if isinstance(x, Tokens):
    mask = x.mask if mask is None else mask
    return x._replace(values=_noise(key, x.values, mask, combine))
  leaves, treedef = jax.tree.flatten(x)
  masks = [None] * len(leaves) if mask is None else treedef.flatten_up_to(mask)
  sizes = [math.prod(jnp.shape(leaf)) for leaf in leaves]
  # One 1-D draw for all leaves, then sliced: XLA:CPU compiles a random kernel per shape,
  # and multi-axis shapes compile many times slower than a vector.
  eps = jax.random.normal(key, (sum(sizes),), jnp.result_type(*leaves))
  out, start = [], 0
  for leaf, m, size in zip(leaves, masks, sizes):
    noise = eps[start : start + size].reshape(jnp.shape(leaf)).astype(jnp.result_type(leaf))
    start += size
    noisy = combine(leaf, noise)
    out.append(noisy if m is None else jnp.where(m, noisy, leaf))
  return jax.tree.unflatten(treedef, out)
