"""DeepSets over neuron tokens, trained on the properties (one architecture).

Settings: config.deepsets.model (encoders.baselines.DeepSets fields); training: config.train.
"""

import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax import weights
from zoo_jax.encoders import baselines, methods


def build(fit: methods.Fit, num_outputs: int) -> methods.Network:
  token_dim = max(weights.token_dim(z.spec) for z in fit.everything)

  def inputs(states):
    tokens, _ = weights.tokenize(
      weights.unflatten(jnp.asarray(states.flat), states.spec), states.spec, dim=token_dim
    )
    return jax.tree.map(np.asarray, tokens)

  module = baselines.DeepSets(num_outputs=num_outputs, **fit.config.deepsets.model.to_dict())
  return methods.Network(module, inputs)


METHOD = methods.DirectMethod(build=build)
