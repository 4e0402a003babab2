"""What a population computes on a dataset: logits and penultimate features, all models at once.

The penultimate features of a model are the input of its last Dense layer (the classifier
head), caught with `flax.linen.intercept_methods` while the model's own `__call__` runs, so
no architecture is written twice and any architecture of `zoo_jax.models` works.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax import population
from zoo_jax.encoders.training import map_batches


def apply_with_features(model: nn.Module, params: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(penultimate features [N, D], logits [N, classes]) of one model on a batch `x` [N, H, W, C]."""
  captured = []

  def catch_head_input(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dense) and context.method_name == "__call__":
      captured.append(args[0])  # the last Dense called is the head
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(catch_head_input):
    logits = model.apply({"params": params}, x)
  if not captured:
    raise ValueError(
      f"{type(model).__name__} calls no Dense layer; it has no penultimate features."
    )
  return captured[-1], logits


def layer_outputs(model: nn.Module, params: Any, x: jax.Array) -> list[jax.Array]:
  """The output of every Conv and Dense layer (before pooling and activation) of one model on `x`,
  in call order: [N, H, W, C] or [N, units] each (the units activation matching correlates)."""
  captured = []

  def catch_output(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, (nn.Conv, nn.Dense)) and context.method_name == "__call__":
      captured.append(out)
    return out

  with nn.intercept_methods(catch_output):
    model.apply({"params": params}, x)
  return captured


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
