"""ResNet-18 as in the Model Zoos code (def_net.py's `ResNet18`, Schürholt et al., 2022).

torchvision's ResNet-18 (BasicBlock, [2, 2, 2, 2], widths 64-128-256-512) with the CIFAR stem
of the Model Zoos: a 3x3 stride-1 first convolution without bias and no max-pool; global
average pooling, then one linear layer. The same module serves CIFAR-10 (10 classes),
CIFAR-100 (100) and Tiny-ImageNet (200, 64x64 inputs): only `num_classes` and the input differ.

BatchNorm (PyTorch's defaults: momentum 0.1, i.e. Flax's 0.9, eps 1e-5) keeps its running
statistics in the `batch_stats` collection: `train=True` normalises with the batch's statistics
and needs `mutable=["batch_stats"]`; `train=False` uses the running ones. The running variance
follows PyTorch by default (`running_var="unbiased"`: the batch variance times n / (n - 1), n =
values per channel, as torch.nn.BatchNorm2d), so a zoo trained here has the running statistics
the Model Zoos' PyTorch training would have; `running_var="biased"` is Flax's nn.BatchNorm update
(the batch variance as is). Both normalise a training batch with its biased variance. Conv and linear
weights draw from the zoo's init method (`kaiming_uniform` in the published zoos), the linear
bias is 0.01, BatchNorm starts at scale 1, bias 0, as the published models do. The activation
is always ReLU and dropout is not used: the Model Zoos' ResNet18 accepts `nlin` and `dropout`
and ignores them. Layer names follow torchvision's (conv1, bn1, layer1_0, ..., fc), so
`zoo_jax.convert.torch_export` maps them one to one.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from zoo_jax.models.cnn import BIAS_INIT, INITS

WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1 (new = 0.9 * old + 0.1 * batch)
BN_EPSILON = 1e-5
RUNNING_VAR = ("unbiased", "biased")  # PyTorch's running-variance update, Flax's


class BatchNorm(nn.Module):
  """BatchNorm over all but the last axis, with nn.BatchNorm's variables (params scale / bias,
  batch_stats mean / var) and a choice of running-variance update (see the module docstring)."""

  use_running_average: bool
  momentum: float = BN_MOMENTUM
  epsilon: float = BN_EPSILON
  running_var: str = "unbiased"

  @nn.compact
  def __call__(self, x):
    if self.running_var not in RUNNING_VAR:
      raise ValueError(
        f"Unknown running_var {self.running_var!r}; allowed values: {list(RUNNING_VAR)}."
      )
    features, axes = x.shape[-1], tuple(range(x.ndim - 1))
    running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
    running_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
    scale = self.param("scale", nn.initializers.ones, (features,))
    bias = self.param("bias", nn.initializers.zeros, (features,))
    if self.use_running_average:
      mean, var = running_mean.value, running_var.value
    else:
      mean = jnp.mean(x, axes)
      var = jnp.mean(jnp.square(x - mean), axes)  # biased: what the batch is normalised with
      if not self.is_initializing():
        n = x.size // features
        update = var * (n / max(n - 1, 1)) if self.running_var == "unbiased" else var
        running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
        running_var.value = self.momentum * running_var.value + (1 - self.momentum) * update
    return (x - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias


def _padding(kernel: int):
  return ((kernel // 2, kernel // 2),) * 2  # PyTorch's padding=1 for 3x3, 0 for 1x1


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with BatchNorm and a residual connection (a 1x1 projection when the shape changes)."""

  features: int
  strides: int = 1
  init_method: str = "kaiming_uniform"
  running_var: str = "unbiased"

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(nn.Conv, use_bias=False, kernel_init=INITS[self.init_method])
    norm = functools.partial(BatchNorm, use_running_average=not train, running_var=self.running_var)
    strides = (self.strides, self.strides)
    y = conv(self.features, (3, 3), strides, padding=_padding(3), name="conv1")(x)
    y = nn.relu(norm(name="bn1")(y))
    y = conv(self.features, (3, 3), padding=_padding(3), name="conv2")(y)
    y = norm(name="bn2")(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = conv(self.features, (1, 1), strides, padding=_padding(1), name="downsample_conv")(x)
      x = norm(name="downsample_bn")(x)
    return nn.relu(y + x)


class ResNet18(nn.Module):
  """ResNet-18 with the CIFAR stem. Inputs NHWC floats (normalised), outputs logits [N, num_classes]."""

  num_classes: int = 10
  activation: str = "relu"  # accepted for the model contract; the network is ReLU, as published
  init_method: str = "kaiming_uniform"
  use_dropout: bool = False  # accepted and ignored, as the published `dropout` argument
  conv_impl: str = "xla"  # accepted for the model contract; ResNet-18 always uses lax convolutions
  running_var: str = (
    "unbiased"  # BatchNorm's running-variance update: PyTorch's, or "biased" (Flax's)
  )

  @nn.compact
  def __call__(self, x, dropout_rate=0.0, dropout_key=None, train: bool = False):
    del dropout_rate, dropout_key  # the published ResNet18 has no dropout
    if self.activation != "relu":
      raise ValueError(
        f"ResNet-18 is a ReLU network (the Model Zoos' ResNet18 ignores nlin); "
        f"got activation {self.activation!r}."
      )
    x = nn.Conv(
      WIDTHS[0],
      (3, 3),
      padding=_padding(3),
      use_bias=False,
      kernel_init=INITS[self.init_method],
      name="conv1",
    )(x)
    x = BatchNorm(use_running_average=not train, running_var=self.running_var, name="bn1")(x)
    x = nn.relu(x)
    for stage, features in enumerate(WIDTHS):
      for block in range(BLOCKS_PER_STAGE):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(
          features, strides, self.init_method, self.running_var, name=f"layer{stage + 1}_{block}"
        )(x, train)
    x = jnp.mean(x, axis=(-3, -2))  # adaptive average pooling to 1x1, then flatten
    return nn.Dense(
      self.num_classes, kernel_init=INITS[self.init_method], bias_init=BIAS_INIT, name="fc"
    )(x)


# For the registry (zoo_jax.models): CIFAR-10/100 32x32, Tiny-ImageNet 64x64, as the data come.
ARCHITECTURES = {"resnet18": (ResNet18, None)}
