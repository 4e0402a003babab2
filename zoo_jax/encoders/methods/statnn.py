"""StatNN: per-layer weight statistics (Unterthiner et al., 2020), any architecture."""

import jax.numpy as jnp
import numpy as np

from zoo_jax import weights
from zoo_jax.encoders import methods
from zoo_jax.encoders.states import ZooStates


def features(states: ZooStates) -> np.ndarray:
  """StatNN features [N, F], computed once per zoo and kept for the other seeds; a mixed pool's
  blocks in order (their architectures must have as many layers: the features are per layer)."""
  if "statnn" not in states.cache:
    parts = []
    for block in states.blocks():
      params = weights.unflatten(jnp.asarray(block.flat), block.spec)
      parts.append(np.asarray(weights.statnn_features(params, block.spec), np.float32))
    widths = {p.shape[1] for p in parts}
    if len(widths) > 1:
      raise ValueError(
        f"StatNN features of {states.name} differ in width across its architectures "
        f"({sorted(widths)}: their layer counts differ); pool architectures of as many layers."
      )
    states.cache["statnn"] = np.concatenate(parts)
  return states.cache["statnn"]


METHOD = methods.FeatureMethod(featurizer=lambda fit: features, cross_architecture=True)
