"""StatNN: per-layer weight statistics (Unterthiner et al., 2020), any architecture."""

import jax.numpy as jnp
import numpy as np

from zoo_jax import weights
from zoo_jax.encoders import methods
from zoo_jax.encoders.states import ZooStates


def features(states: ZooStates) -> np.ndarray:
  """StatNN features [N, F], computed once per zoo and kept for the other seeds."""
  if "statnn" not in states.cache:
    params = weights.unflatten(jnp.asarray(states.flat), states.spec)
    states.cache["statnn"] = np.asarray(weights.statnn_features(params, states.spec), np.float32)
  return states.cache["statnn"]


METHOD = methods.FeatureMethod(featurizer=lambda fit: features, cross_architecture=True)
