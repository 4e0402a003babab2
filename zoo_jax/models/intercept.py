"""What a model computes inside: its penultimate features and each layer's outputs, for any architecture.

The penultimate features of a model are the input of its last Dense layer (the classifier
head), caught with `flax.linen.intercept_methods` while the model's own `__call__` runs, so
no architecture is written twice and any architecture of `zoo_jax.models` works.
"""

from typing import Any

import flax.linen as nn
import jax


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
