"""Neuron tokens: the hyper-representation encoding of a network (Schürholt et al., 2021/2022).

Every output unit of every layer (a conv output channel or a dense output feature)
becomes one token: its incoming weights, all kernel positions x input channels raveled
in the kernel's C order (for a conv HWIO kernel: h, w, then input channel), followed by
its bias, then zeros up to the token width d = max over layers of (fan_in + 1). Tokens
are ordered by layer, then unit. A mask marks the real entries; `layer` and `position`
give each token's layer index and unit index within the layer.

A width d shorter than a unit's fan_in + 1 splits that unit into ceil((fan_in + 1) / d)
consecutive pieces of d entries (the last zero-padded), one token each, as set-based weight
encoders chunk long units; the position is then unit * pieces + piece, so a layer's tokens
still come unit by unit and a hidden-unit permutation moves whole groups of pieces.
"""

import functools
from typing import Any, NamedTuple

import chex
import jax
import numpy as np

from zoo_jax.weights import flat
from zoo_jax.weights import layout as layout_lib
from zoo_jax.weights import spec as spec_lib
from zoo_jax.weights.spec import Params, WeightSpec


class Tokens(NamedTuple):
  """Token matrix of one model (or a batch: every field has the leading batch axes B)."""

  values: jax.Array  # [*B, T, d] incoming weights then bias, zero-padded
  mask: jax.Array  # [*B, T, d] bool, True on real entries
  layer: jax.Array  # [*B, T] int32, index of the token's layer in spec.layers
  position: jax.Array  # [*B, T] int32, the unit's index within its layer


def token_dim(spec: WeightSpec) -> int:
  """The natural token width: the longest token (fan_in + bias) over the layers."""
  spec_lib.check_unit_layers(spec, "Tokenisation")
  return max(layer.fan_in + (layer.param("bias") is not None) for layer in spec.layers)


def pieces(spec: WeightSpec, dim: int | None = None) -> tuple[int, ...]:
  """Tokens per unit of each layer at width `dim` (None: the natural width, one each)."""
  dim = token_dim(spec) if dim is None else dim
  if dim < 1:
    raise ValueError(f"token_dim={dim} must be >= 1.")
  return tuple(
    -(-(layer.fan_in + (layer.param("bias") is not None)) // dim) for layer in spec.layers
  )


@functools.lru_cache(maxsize=64)
def token_layout(spec: WeightSpec, dim: int | None = None) -> layout_lib.Layout:
  """Static index map from the flat vector to the [T, d] token matrix (d = dim or token_dim);
  a unit longer than d becomes several consecutive tokens (`pieces`)."""
  dim = token_dim(spec) if dim is None else dim
  rows, layers, positions = [], [], []
  for i, (layer, k) in enumerate(zip(spec.layers, pieces(spec, dim))):
    kernel, bias = layer.param("kernel"), layer.param("bias")
    units, fan_in = layer.units, layer.fan_in
    index = np.full((units, k * dim), -1, np.int64)
    # The kernel is raveled in C order, so kernel[pos, unit] sits at pos * units + unit.
    index[:, :fan_in] = (
      kernel.offset + np.arange(fan_in)[None, :] * units + np.arange(units)[:, None]
    )
    if bias is not None:
      index[:, fan_in] = bias.offset + np.arange(units)
    rows.append(index.reshape(units * k, dim))  # unit u's piece p is row u * k + p
    layers.append(np.full(units * k, i, np.int32))
    positions.append(np.arange(units * k, dtype=np.int32))
  return layout_lib.Layout(np.concatenate(rows), np.concatenate(layers), np.concatenate(positions))


@functools.partial(jax.jit, static_argnames="dim")
def tokenize(
  params: Params, spec: WeightSpec | None = None, *, dim: int | None = None
) -> tuple[Tokens, WeightSpec]:
  """Encodes params as neuron tokens.

  Args:
    params: pytree of conv/dense layers, optional leading batch axes B.
    spec: the layout; None builds it with `make_spec`.
    dim: token width; None for `token_dim(spec)`, larger to share a width across architectures,
      smaller to split long units into several tokens (`pieces`).
  Returns:
    (Tokens with values [*B, T, d], spec); T = the sum over layers of units x pieces.
  """
  vector, spec = flat.flatten(params, spec)
  layout = token_layout(spec, dim)
  batch_shape = vector.shape[:-1]
  tokens = Tokens(
    values=layout_lib.gather(vector, layout),
    mask=layout_lib.broadcast(layout.mask, batch_shape),
    layer=layout_lib.broadcast(layout.layer, batch_shape),
    position=layout_lib.broadcast(layout.position, batch_shape),
  )
  chex.assert_shape(tokens.values, batch_shape + layout.index.shape)
  return tokens, spec


def detokenize(tokens: Tokens | jax.Array, spec: WeightSpec) -> dict[str, Any]:
  """Inverse of `tokenize`: Tokens (or their values [*B, T, d]) -> params; padding is ignored."""
  values = tokens.values if isinstance(tokens, Tokens) else tokens
  layout = token_layout(spec, values.shape[-1])
  chex.assert_shape(values, (..., *layout.index.shape))
  return flat.unflatten(layout_lib.scatter(values, layout), spec)
