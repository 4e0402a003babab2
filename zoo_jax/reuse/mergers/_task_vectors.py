"""Task vectors (Ilharco et al., 2023) of fine-tuned models, shared by task_arithmetic.py and ties.py."""

import numpy as np

from zoo_jax.reuse import merging
from zoo_jax.reuse.mergers import Context, Merged


def task_vectors(context: Context) -> tuple[np.ndarray, np.ndarray]:
  """(the ancestor's flat weights [n], every model's task vector: its flat weights minus the ancestor's [M, n])."""
  origin = merging.flat(merging.stack([context.ancestor]))[0]
  return origin, context.flat - origin


def best_scaled(context: Context, method: str, origin: np.ndarray, vector: np.ndarray) -> Merged:
  """origin + lambda * vector with lambda of `config.scales` best on validation, named `method`_lambda_<lambda>."""
  scales = context.config.scales
  candidates = [merging.unflatten(origin + s * vector, context.spec) for s in scales]
  accs = context.evaluate(merging.stack(candidates), "validation")[1]
  best = int(np.argmax(accs))
  return Merged(
    method + f"_lambda_{scales[best]:g}", list(range(context.num_models)), candidates[best]
  )
