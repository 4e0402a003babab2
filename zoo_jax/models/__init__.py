"""Model registry: architectures by name, with their input shapes.

The model contract: `model.init(key, x)` gives variables {"params": ...} plus, for models with
BatchNorm (resnet18), {"batch_stats": ...}; `model.apply(variables, x, dropout_rate, dropout_key,
train=False)` gives logits, and with `train=True, mutable=["batch_stats"]` also the updated
statistics. Models without mutable state accept the same calls (train is then ignored).
"""

from zoo_jax.models.cnn import ACTIVATIONS, INITS, CNNLarge, CNNSmall, MLP, dropout

ARCHITECTURES = {"cnn_s": CNNSmall, "cnn_l": CNNLarge, "mlp": MLP}

# The input (H, W) each architecture is defined for; channels come from the dataset.
INPUT_SIZES = {"cnn_s": (28, 28), "cnn_l": (32, 32), "mlp": None}

# The Small CNN Zoo (Unterthiner et al., 2020); any input size (global average pooling): 28 for
# MNIST / Fashion-MNIST, 32 for CIFAR-10-GS / SVHN-GS, as trained.
from zoo_jax.models.cnn_zoo import CNNZoo  # noqa: E402
ARCHITECTURES["cnn_zoo"] = CNNZoo
INPUT_SIZES["cnn_zoo"] = None

# ResNet-18 of the Model Zoos (CIFAR-10/100 32x32, Tiny-ImageNet 64x64): BatchNorm statistics in the
# `batch_stats` collection, `train=True` to update them (see resnet.py).
from zoo_jax.models.resnet import ResNet18  # noqa: E402
ARCHITECTURES["resnet18"] = ResNet18
INPUT_SIZES["resnet18"] = None


def get_model(arch: str, *, activation: str = "tanh", init: str = "uniform",
              use_dropout: bool = False, num_classes: int = 10, **kwargs):
  """Builds the named architecture; unknown names or choices raise a ValueError naming them."""
  _check("model.arch", arch, ARCHITECTURES)
  _check("activation", activation, ACTIVATIONS)
  _check("init", init, INITS)
  return ARCHITECTURES[arch](num_classes=num_classes, activation=activation, init_method=init,
                             use_dropout=use_dropout, **kwargs)


def _check(field, value, allowed):
  if value not in allowed:
    raise ValueError(f"Unknown {field} {value!r}; allowed values: {sorted(allowed)}.")


__all__ = ["ACTIVATIONS", "ARCHITECTURES", "INITS", "INPUT_SIZES", "CNNLarge", "CNNSmall", "MLP", "ResNet18",
           "dropout", "get_model"]
