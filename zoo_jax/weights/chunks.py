"""Pad-chunks: the set encoding of Set-based Neural Network Encoding (SNE; Andreis et al., 2023).

Each layer's weights, in flat order (kernel raveled in C order, then bias), are
zero-padded to a multiple of `chunk_size` and cut into chunks [n_chunks, chunk_size].
A chunk never mixes layers. Works for any params tree (a layer is any dict of arrays),
not only conv/dense layers.
"""

import functools
from typing import Any, NamedTuple

import chex
import jax
import numpy as np

from zoo_jax.weights import flat
from zoo_jax.weights import layout as layout_lib
from zoo_jax.weights.spec import Params, WeightSpec

# SNE treats the chunk size as a hyperparameter; 64 is a neutral default, not the paper's.
DEFAULT_CHUNK_SIZE = 64


class Chunks(NamedTuple):
  """Chunked weights of one model (or a batch: every field has the leading batch axes B)."""

  values: jax.Array  # [*B, C, chunk_size], zero-padded at the end of each layer
  mask: jax.Array  # [*B, C, chunk_size] bool, True on real entries
  layer: jax.Array  # [*B, C] int32, index of the chunk's layer in spec.layers
  position: jax.Array  # [*B, C] int32, the chunk's index within its layer


@functools.lru_cache(maxsize=64)
def chunk_layout(spec: WeightSpec, chunk_size: int = DEFAULT_CHUNK_SIZE) -> layout_lib.Layout:
  """Static index map from the flat vector to the [C, chunk_size] chunk matrix."""
  if chunk_size < 1:
    raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
  rows, layers, positions = [], [], []
  for i, layer in enumerate(spec.layers):
    n = -(-layer.size // chunk_size)  # ceil
    index = np.full(n * chunk_size, -1, np.int64)
    index[: layer.size] = layer.offset + np.arange(layer.size)
    rows.append(index.reshape(n, chunk_size))
    layers.append(np.full(n, i, np.int32))
    positions.append(np.arange(n, dtype=np.int32))
  return layout_lib.Layout(np.concatenate(rows), np.concatenate(layers), np.concatenate(positions))


@functools.partial(jax.jit, static_argnames="chunk_size")
def chunk(
  params: Params, spec: WeightSpec | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[Chunks, WeightSpec]:
  """Encodes params as per-layer pad-chunks.

  Args:
    params: pytree with optional leading batch axes B.
    spec: the layout; None builds it with `make_spec`.
    chunk_size: entries per chunk (static).
  Returns:
    (Chunks with values [*B, C, chunk_size], spec); C = sum over layers of ceil(size / chunk_size).
  """
  vector, spec = flat.flatten(params, spec)
  layout = chunk_layout(spec, chunk_size)
  batch_shape = vector.shape[:-1]
  chunks = Chunks(
    values=layout_lib.gather(vector, layout),
    mask=layout_lib.broadcast(layout.mask, batch_shape),
    layer=layout_lib.broadcast(layout.layer, batch_shape),
    position=layout_lib.broadcast(layout.position, batch_shape),
  )
  chex.assert_shape(chunks.values, batch_shape + layout.index.shape)
  return chunks, spec


@jax.jit
def unchunk(chunks: Chunks | jax.Array, spec: WeightSpec) -> dict[str, Any]:
  """Inverse of `chunk`: Chunks (or values [*B, C, chunk_size]) -> params; padding is ignored."""
  values = chunks.values if isinstance(chunks, Chunks) else chunks
  layout = chunk_layout(spec, values.shape[-1])
  chex.assert_shape(values, (..., *layout.index.shape))
  return flat.unflatten(layout_lib.scatter(values, layout), spec)
