"""What a population computes on a dataset, all models at once: logits and penultimate features
(ranking), or every layer's outputs (activation matching). One model's are `models.intercept`'s."""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax.engine import population
from zoo_jax.models.intercept import apply_with_features, layer_outputs
from zoo_jax.encoders.training import map_batches


def make_outputs(
  cohort: population.Cohort,
  *,
  mean,
  std,
  num_classes: int = 10,
  conv_impl: str = "xla",
  batch_size: int = 500,
) -> Callable[[Any, np.ndarray], tuple[np.ndarray, np.ndarray]]:
  """Builds `outputs(params [P, ...], images uint8 [N, H, W, C]) -> (features [P, N, D], logits [P, N, K])`,
  evaluation mode, one jitted call per batch of images for the whole population (host numpy out)."""
  model = population.make_model(cohort, num_classes, conv_impl=conv_impl)

  @jax.jit
  def batch(params, images):
    x = population.normalize(images, mean, std)
    return jax.vmap(lambda p: apply_with_features(model, p, x))(params)

  def outputs(params, images):
    params = jax.tree.map(jnp.asarray, params)
    # map_batches concatenates along axis 0; put the image axis first and back.
    feats, logits = map_batches(
      lambda x: jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), batch(params, x)),
      np.asarray(images),
      batch_size,
    )
    return np.swapaxes(feats, 0, 1), np.swapaxes(logits, 0, 1)

  return outputs


def make_layer_outputs(model: nn.Module) -> Callable[[Any, jax.Array], list[jax.Array]]:
  """Builds `outputs(params [P, ...], x [N, H, W, C])`: every Conv and Dense layer's output of each
  model on the same images, [P, N, ...] per layer in call order (jitted)."""
  return jax.jit(jax.vmap(lambda p, x: layer_outputs(model, p, x), in_axes=(0, None)))
