"""Params pytrees <-> flat vectors, one per model.

The flat vector concatenates the layers in spec order and, within a layer, the kernel
then the bias (each raveled in C order). Leading batch axes pass through: a population
[P, ...] flattens to [P, n], and `vmap(flatten)` gives the same result.
"""

from typing import Any, Iterator

import chex
import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax.weights import spec as spec_lib
from zoo_jax.weights.spec import Params, WeightSpec


@jax.jit
def flatten(params: Params, spec: WeightSpec | None = None) -> tuple[jax.Array, WeightSpec]:
  """Flattens params to a vector per model.

  Args:
    params: pytree with optional leading batch axes B (e.g. [P]), with or without the
      top-level 'params' key.
    spec: the layout; None builds it with `make_spec` (batch axes inferred from biases).
  Returns:
    (vector [*B, n] in spec.dtype, spec) with n = spec.size.
  """
  if spec is None:
    spec = spec_lib.make_spec(params)
  arrays, batch_shape = spec_lib.layer_arrays(params, spec)
  parts = [
    layer[p.name].reshape(batch_shape + (p.size,)).astype(spec.dtype)
    for layer, layer_spec in zip(arrays, spec.layers)
    for p in layer_spec.params
  ]
  vector = jnp.concatenate(parts, axis=-1)
  chex.assert_shape(vector, batch_shape + (spec.size,))
  return vector, spec


@jax.jit
def unflatten(vector: jax.Array, spec: WeightSpec) -> dict[str, Any]:
  """Inverse of `flatten`: vector [*B, n] -> params pytree with leading batch axes B."""
  chex.assert_shape(vector, (..., spec.size))
  batch_shape = vector.shape[:-1]
  arrays = []
  for layer in spec.layers:
    arrays.append(
      {
        p.name: vector[..., p.offset : p.offset + p.size]
        .reshape(batch_shape + p.shape)
        .astype(p.dtype)
        for p in layer.params
      }
    )
  return spec_lib.build_params(arrays, spec)


BLOCK_BYTES = 1 << 22  # row_blocks' default: about 4 MB of float64 per block


def row_blocks(flat: Any, spec: WeightSpec, block_bytes: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
  """Consecutive blocks of the rows of `flat` [N, n] as numpy arrays, each about `block_bytes`
  in float64, for whole-zoo statistics that must not hold the zoo: `flat` may be an array or a
  source that reads rows on demand (streaming.StreamedFlat). An empty `flat` gives one empty block."""
  rows = max(1, block_bytes // (8 * spec.size))
  for start in range(0, max(len(flat), 1), rows):
    yield np.asarray(flat[start : start + rows])
