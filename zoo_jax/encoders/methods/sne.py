"""SNE: a set network over weight chunks, any architecture (cross-architecture test sets).

Settings: config.sne (model: encoders.sne.SNE fields; invariance_weight; input_scaling);
training: config.train. Its embeddings (SNE.embed) are written to embeddings.npz.
"""

import jax

from zoo_jax import weights
from zoo_jax.encoders import methods, sne, training


def build(fit: methods.Fit, num_outputs: int) -> methods.Network:
  config, everything = fit.config, fit.everything
  size = config.sne.model.chunk_size
  num_chunks = max(weights.chunk_layout(z.spec, size).index.shape[0] for z in everything)
  # Input scaling: each architecture's layers divided by their std over the training states
  # (another architecture's: over its own zoo's states), or raw weights.
  scales = {}
  for z in [fit.train, *everything]:
    if config.sne.get("input_scaling", False) and z.spec not in scales:
      scales[z.spec] = sne.layer_scales(z.flat, z.spec)
  chunk = {
    z.spec: sne.make_chunker(z.spec, size, num_chunks, scales.get(z.spec)) for z in everything
  }
  permuted = {
    z.spec: sne.make_permuted_chunker(z.spec, size, num_chunks, scales.get(z.spec))
    for z in everything
  }

  def inputs(states):
    return training.map_batches(chunk[states.spec], states.flat, 512)

  def permuted_inputs(states):  # fresh neuron permutations of every state, for the logit invariance
    fn = permuted[states.spec]
    return lambda key: training.map_batches(lambda x: fn(key, x), states.flat, 512)

  module = sne.SNE(num_outputs=num_outputs, **config.sne.model.to_dict())
  embed_fn = jax.jit(lambda p, x: module.apply(p, x, method=sne.SNE.embed))
  return methods.Network(
    module,
    inputs,
    train_kwargs=dict(
      invariance_weight=config.sne.invariance_weight, permuted=permuted_inputs(fit.train)
    ),
    embed=lambda params, states: training.map_batches(
      lambda x: embed_fn(params, x), inputs(states)
    ),
  )


METHOD = methods.DirectMethod(build=build, cross_architecture=True)
