"""What a model computes inside: its penultimate features and each layer's outputs, for any architecture.

The penultimate features of a model are the input of its last Dense layer (the classifier
head), caught with `flax.linen.intercept_methods` while the model's own `__call__` runs, so
no architecture is written twice and any architecture of `zoo_jax.models` works.
"""

from typing import Any

import flax.linen as nn
import jax

from zoo_jax.models import fast_conv


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


def layer_inputs(model: nn.Module, params: Any, x: jax.Array) -> list[jax.Array]:
  """What every Conv and Dense layer's kernel multiplies, for one model on `x`, in call order:
  [N, ..., D] rows whose product with the layer's kernel reshaped to [D, units] is its output
  before the bias: a Conv's im2col patches (`fast_conv.conv_patches`), a Dense's input."""
  captured = []

  def catch_input(next_fun, args, kwargs, context):
    m = context.module
    if isinstance(m, nn.Conv) and context.method_name == "__call__":
      if m.feature_group_count != 1 or m.kernel_dilation not in (None, 1, (1, 1)):
        raise ValueError(f"layer_inputs reads plain convolutions; {m.name} is grouped or dilated.")
      strides = m.strides or (1,) * len(m.kernel_size)
      strides = (strides,) * len(m.kernel_size) if isinstance(strides, int) else strides
      captured.append(fast_conv.conv_patches(args[0], m.kernel_size, strides, m.padding))
    elif isinstance(m, nn.Dense) and context.method_name == "__call__":
      captured.append(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(catch_input):
    model.apply({"params": params}, x)
  return captured
