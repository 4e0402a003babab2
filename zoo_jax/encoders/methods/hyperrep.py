"""Hyper-representations: a self-supervised autoencoder over weight tokens; its embeddings are the features.

Settings: config.hyperrep (model, optimisation, augmentations). Seed 0's autoencoder is saved
for zoo_jax.sample, with the pool's held-out models named (sampling checks decoding on them).
"""

import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax import streaming
from zoo_jax.encoders import hyperrep, methods, training


def featurizer(fit: methods.Fit):
  """Trains the autoencoder self-supervised on the training states; returns `states -> z [N, D]`."""
  config, train, seed = fit.config, fit.train, fit.seed
  h = config.hyperrep
  # The layer-wise normaliser comes from the (filtered) training states only, read in blocks of states.
  layer_variance = jnp.asarray(streaming.layer_variances(train.flat, train.spec))
  model = hyperrep.make_model(
    train.spec,
    per_layer=h.get("per_layer", False),
    layer_variance=layer_variance if h.get("input_scaling", False) else None,
    **h.model.to_dict(),
  )
  init_key, fit_key = jax.random.split(jax.random.key(seed))
  params = hyperrep.init(init_key, model)
  # A step budget (num_steps) sets the epochs: ceil(num_steps / steps per epoch).
  steps_per_epoch = max(len(train.flat) // min(h.batch_size, len(train.flat)), 1)
  num_epochs = h.num_epochs if h.get("num_steps") is None else -(-h.num_steps // steps_per_epoch)
  tx = hyperrep.make_optimizer(
    h.learning_rate,
    schedule=h.get("schedule", "constant"),
    total_steps=num_epochs * steps_per_epoch,
    warmup_steps=h.get("warmup_steps", 0),
  )
  step = hyperrep.make_train_step(
    model,
    tx,
    spec=train.spec,
    layer_variance=layer_variance,
    gamma=h.gamma,
    temperature=h.temperature,
    noise=h.noise,
    erase_p=h.erase_p,
    permute=h.permute,
    reduction=h.get("reduction", "layer_mean"),
    target=h.get("target", "clean"),
  )
  params, _, history = training.fit(
    step,
    params,
    tx.init(params),
    train.flat,
    key=fit_key,
    num_epochs=num_epochs,
    batch_size=h.batch_size,
    checkpoint_dir=fit.checkpoint_dir,
    progress=config.progress_bar,
    desc=f"hyperrep seed {seed}",
  )
  if fit.save_dir is not None:
    # held_out_models: "zoo/model_id" keys kept out of its training (zoo_jax.sample checks decoding on them).
    hyperrep.save(
      fit.save_dir,
      model,
      params,
      train.spec,
      layer_variance=layer_variance,
      history=history,
      held_out_models=sorted(fit.held_out),
    )
  embed = hyperrep.make_embed(model, train.spec)
  return lambda states: np.asarray(
    embed(params, states.flat)
  )  # in batches: states.flat may be on disk


METHOD = methods.FeatureMethod(featurizer=featurizer, embeddings=True)
