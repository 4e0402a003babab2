"""The Small CNN Zoo architecture (Unterthiner et al., 2020, "Predicting Neural Network Accuracy
from Weights") as a Flax module.

The original is a Keras `Sequential`: three `Conv2D(16, 3, strides=2)` layers with the
activation inside the conv, `Dropout` after each when the rate is > 0, global average
pooling, `Dense(10)`; 4,970 parameters for 1-channel (grayscale) inputs. Keras' Conv2D
default padding is 'valid', which the parameter count cannot tell apart from 'same' but the
function can, so padding is VALID here (28x28 -> 13 -> 6 -> 2; 32x32 -> 15 -> 7 -> 3).
Because of the global average pooling the module takes any input size of at least 7x7.
Keras kernels are HWIO and dense kernels (in, out), as in Flax: weights load unchanged.
"""

import flax.linen as nn
import jax.numpy as jnp

from zoo_jax.models.cnn import _ZooNet

# The Small CNN Zoo's fixed architecture: config.num_layers = 3, config.num_units = 16,
# kernel 3 (CNN_KERNEL_SIZE), stride 2 (--cnn_stride).
NUM_LAYERS, NUM_UNITS, KERNEL_SIZE, STRIDE = 3, 16, 3, 2


class CNNZoo(_ZooNet):
  """Small CNN Zoo: HxWxC -> 3 x (conv16 3x3 stride 2 VALID, act) -> global average pool -> 10.

  4,970 parameters for C=1. Dropout (when used) follows each conv's activation, as in the
  original; the dense layer's output has no activation.
  """

  @nn.compact
  def __call__(
    self, x, dropout_rate=0.0, dropout_key=None, train: bool = False
  ):  # train: no mutable state
    for i in range(NUM_LAYERS):
      x = self._conv(NUM_UNITS, KERNEL_SIZE, f"conv_{i}", stride=STRIDE)(x)
      x = self._act(x, dropout_rate, dropout_key, i)
    x = jnp.mean(x, axis=(-3, -2))  # GlobalAveragePooling2D
    return self._dense(self.num_classes, "dense_0")(x)


# For the registry (zoo_jax.models): any input size (global average pooling): 28 for MNIST /
# Fashion-MNIST, 32 for CIFAR-10-GS / SVHN-GS, as trained.
ARCHITECTURES = {"cnn_zoo": (CNNZoo, None)}
