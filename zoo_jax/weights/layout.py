"""Layouts: static index maps from a model's flat vector to a padded [rows, cols] matrix.

Tokens and pad-chunks are both gathers from the flat vector (see `flat.py`) with an
index map computed once per spec in numpy: entry (r, c) of the matrix is flat entry
`index[r, c]`, or padding (0) where `index[r, c] == -1`. The inverse is a gather too,
so encoding and decoding are each one XLA gather whatever the batch shape, and exact.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Layout:
  """index [R, C] into the flat vector (-1: padding); layer and position of each row [R]."""

  index: np.ndarray
  layer: np.ndarray
  position: np.ndarray

  @property
  def mask(self) -> np.ndarray:
    """[R, C] bool: True where the entry is a real weight."""
    return self.index >= 0

  @property
  def inverse(self) -> np.ndarray:
    """[n] int: the raveled matrix position of each flat entry."""
    rows, cols = np.nonzero(self.mask)
    flat = self.index[rows, cols]
    inverse = np.empty(flat.size, np.int64)
    inverse[flat] = rows * self.index.shape[1] + cols
    return inverse


def gather(vector: jax.Array, layout: Layout) -> jax.Array:
  """vector [*B, n] -> matrix [*B, R, C], zeros at padding."""
  padded = jnp.concatenate([vector, jnp.zeros(vector.shape[:-1] + (1,), vector.dtype)], axis=-1)
  index = np.where(layout.mask, layout.index, vector.shape[-1])  # padding reads the appended 0
  return jnp.take(padded, jnp.asarray(index, jnp.int32), axis=-1, mode="clip")


def scatter(matrix: jax.Array, layout: Layout) -> jax.Array:
  """Inverse of `gather`: matrix [*B, R, C] -> vector [*B, n]; padding is ignored."""
  rows, cols = layout.index.shape
  raveled = matrix.reshape(matrix.shape[:-2] + (rows * cols,))
  return jnp.take(raveled, jnp.asarray(layout.inverse, jnp.int32), axis=-1, mode="clip")


def broadcast(array: np.ndarray, batch_shape: tuple[int, ...]) -> jax.Array:
  """A static per-model array, broadcast to the leading batch axes."""
  return jnp.broadcast_to(jnp.asarray(array), batch_shape + array.shape)
