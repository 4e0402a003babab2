"""The Model Zoos architectures (Schürholt et al., 2022) as Flax modules.

CNN-s and CNN-l replicate the published zoos layer for layer (VALID convolutions,
max-pool *before* the activation, dropout after every activation when the zoo uses
it), so parameter counts and functions match the PyTorch originals. Inputs are
NHWC floats, already normalised; outputs are logits.
"""

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax.models.fast_conv import CONV_IMPLS, max_pool_2x2

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  "tanh": jnp.tanh,
  "relu": nn.relu,
  "sigmoid": nn.sigmoid,
  # PyTorch's nn.GELU is the exact (erf) form.
  "gelu": lambda x: nn.gelu(x, approximate=False),
  # PyTorch's default negative slope is 0.01, as is jax's.
  "leaky_relu": nn.leaky_relu,
}


def _fans(shape) -> tuple[int, int]:
  receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
  return shape[-2] * receptive, shape[-1] * receptive


def _flat_init(draw: Callable[[jax.Array, int, tuple], jax.Array]) -> nn.initializers.Initializer:
  """An initializer that draws a flat vector and reshapes it.

  Threefry draws over multi-axis shapes compile several times slower on CPU than flat
  ones (seconds per conv kernel), so every initializer here draws flat.
  """

  def init(key, shape, dtype=jnp.float32):
    return draw(key, int(np.prod(shape)), shape).astype(dtype).reshape(shape)

  return init


def _uniform(bound_fn):
  return _flat_init(
    lambda key, n, shape: jax.random.uniform(
      key, (n,), minval=-bound_fn(shape), maxval=bound_fn(shape)
    )
  )


def _normal(std_fn):
  return _flat_init(lambda key, n, shape: std_fn(shape) * jax.random.normal(key, (n,)))


# The Model Zoos code draws `uniform` from U(0, 1) and `normal` from N(0, 1), unscaled;
# kaiming_* (PyTorch's defaults: gain sqrt(2), fan_in) and xavier_* (fan_avg) use untruncated
# normals, as PyTorch does.
INITS: dict[str, nn.initializers.Initializer] = {
  "uniform": _flat_init(lambda key, n, shape: jax.random.uniform(key, (n,))),
  "normal": _normal(lambda shape: 1.0),
  "kaiming_uniform": _uniform(lambda shape: np.sqrt(6.0 / _fans(shape)[0])),
  "kaiming_normal": _normal(lambda shape: np.sqrt(2.0 / _fans(shape)[0])),
  "xavier_uniform": _uniform(lambda shape: np.sqrt(6.0 / sum(_fans(shape)))),
  "xavier_normal": _normal(lambda shape: np.sqrt(2.0 / sum(_fans(shape)))),
}

# Every bias starts at 0.01, as in the Model Zoos code.
BIAS_INIT = nn.initializers.constant(0.01)


def dropout(x: jax.Array, rate: jax.Array | float, key: jax.Array | None) -> jax.Array:
  """Inverted dropout with a *traced* rate, so each model of a vmap has its own.

  flax.linen.Dropout takes its rate as a static attribute; a population needs the
  rate as an array. With key=None (evaluation) it is the identity.
  """
  if key is None:
    return x
  keep = 1.0 - rate
  mask = jax.random.bernoulli(key, keep, (x.size,)).reshape(x.shape)  # flat draw: faster to compile
  return jnp.where(mask, x / keep, 0.0)


class _ZooNet(nn.Module):
  """Shared plumbing: activation, init, dropout after each activation."""

  num_classes: int = 10
  activation: str = "tanh"
  init_method: str = "uniform"
  use_dropout: bool = False
  # How convolutions and pools are computed (same function): "xla" (lax.conv_general_dilated,
  # reduce_window), "patches" or "taps" (slices + matmul, reshape + max: fast on CPU; see fast_conv.py).
  conv_impl: str = "xla"

  def _act(self, x, rate, key, index):
    x = ACTIVATIONS[self.activation](x)
    if self.use_dropout and key is not None:
      x = dropout(x, rate, jax.random.fold_in(key, index))
    return x

  def _conv(self, features, size, name, stride=1):
    return nn.Conv(
      features,
      (size, size),
      strides=(stride, stride),
      padding="VALID",
      kernel_init=INITS[self.init_method],
      bias_init=BIAS_INIT,
      conv_general_dilated=CONV_IMPLS[self.conv_impl],
      name=name,
    )

  def _dense(self, features, name):
    return nn.Dense(features, kernel_init=INITS[self.init_method], bias_init=BIAS_INIT, name=name)


def _pool(x, conv_impl="xla"):
  if conv_impl != "xla":
    return max_pool_2x2(x)
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")


class CNNSmall(_ZooNet):
  """CNN-s: 28x28xC -> conv8 5x5, pool, act -> conv6 5x5, pool, act -> conv4 2x2, act -> 36 -> 20 -> 10.

  2,464 parameters for C=1, 2,864 for C=3.
  """

  @nn.compact
  def __call__(
    self, x, dropout_rate=0.0, dropout_key=None, train: bool = False
  ):  # train: no mutable state
    x = self._act(
      _pool(self._conv(8, 5, "conv_0")(x), self.conv_impl), dropout_rate, dropout_key, 0
    )
    x = self._act(
      _pool(self._conv(6, 5, "conv_1")(x), self.conv_impl), dropout_rate, dropout_key, 1
    )
    x = self._act(self._conv(4, 2, "conv_2")(x), dropout_rate, dropout_key, 2)
    x = x.reshape(x.shape[:-3] + (-1,))  # (H, W, C) flatten order; PyTorch's is (C, H, W)
    x = self._act(self._dense(20, "dense_0")(x), dropout_rate, dropout_key, 3)
    return self._dense(self.num_classes, "dense_1")(x)


class CNNLarge(_ZooNet):
  """CNN-l: 32x32x3 -> (conv16, conv32, conv15; 3x3, pool, act each) -> 60 -> 20 -> 10. 10,853 parameters."""

  @nn.compact
  def __call__(
    self, x, dropout_rate=0.0, dropout_key=None, train: bool = False
  ):  # train: no mutable state
    for i, features in enumerate((16, 32, 15)):
      x = self._act(
        _pool(self._conv(features, 3, f"conv_{i}")(x), self.conv_impl), dropout_rate, dropout_key, i
      )
    x = x.reshape(x.shape[:-3] + (-1,))
    x = self._act(self._dense(20, "dense_0")(x), dropout_rate, dropout_key, 3)
    return self._dense(self.num_classes, "dense_1")(x)


class MLP(_ZooNet):
  """A plain MLP over flattened images: hidden widths, then the classes."""

  hidden: Sequence[int] = (32, 16)

  @nn.compact
  def __call__(
    self, x, dropout_rate=0.0, dropout_key=None, train: bool = False
  ):  # train: no mutable state
    x = x.reshape(x.shape[:-3] + (-1,))
    for i, features in enumerate(self.hidden):
      x = self._act(self._dense(features, f"dense_{i}")(x), dropout_rate, dropout_key, i)
    return self._dense(self.num_classes, f"dense_{len(self.hidden)}")(x)


# The architectures of this file for the registry (zoo_jax.models): name -> (module, the input (H, W)
# it is defined for, or None: any size; channels come from the dataset).
ARCHITECTURES = {"cnn_s": (CNNSmall, (28, 28)), "cnn_l": (CNNLarge, (32, 32)), "mlp": (MLP, None)}
