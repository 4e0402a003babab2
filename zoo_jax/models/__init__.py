"""Model registry: architectures by name, with their input shapes.

An architecture is declared where it is defined: a module of this folder names its models in a
module-level `ARCHITECTURES = {"name": (ModuleClass, (H, W) or None)}`; this package collects
them (a new architecture is one new file plus a config with model.arch = "name").

The model contract: `model.init(key, x)` gives variables {"params": ...} plus, for models with
BatchNorm (resnet18), {"batch_stats": ...}; `model.apply(variables, x, dropout_rate, dropout_key,
train=False)` gives logits, and with `train=True, mutable=["batch_stats"]` also the updated
statistics. Models without mutable state accept the same calls (train is then ignored).
"""

from zoo_jax import registry
from zoo_jax.models.cnn import ACTIVATIONS, INITS, CNNLarge, CNNSmall, MLP, dropout
from zoo_jax.models.resnet import ResNet18


def _declared() -> dict[str, tuple]:
  """Every module of this folder's `ARCHITECTURES` (name -> (module class, input (H, W) or None))."""
  found = {}
  for module in registry.modules(__name__).values():
    found.update(getattr(module, "ARCHITECTURES", {}))
  return found


# Architectures by name, and the input (H, W) each is defined for (None: any; channels come from the
# dataset): both made from the files' declarations, the one place an architecture is named.
_DECLARED = _declared()
ARCHITECTURES = {name: module for name, (module, _) in _DECLARED.items()}
INPUT_SIZES = {name: size for name, (_, size) in _DECLARED.items()}


def image_size(arch: str) -> int | None:
  """The image side `arch` reads (data.load's image_size: the dataset is resized to it), or None:
  the dataset's own size."""
  size = INPUT_SIZES.get(arch)
  return size[0] if size else None


def get_model(
  arch: str,
  *,
  activation: str = "tanh",
  init: str = "uniform",
  use_dropout: bool = False,
  num_classes: int = 10,
  **kwargs,
):
  """Builds the named architecture; unknown names or choices raise a ValueError naming them."""
  _check("model.arch", arch, ARCHITECTURES)
  _check("activation", activation, ACTIVATIONS)
  _check("init", init, INITS)
  return ARCHITECTURES[arch](
    num_classes=num_classes,
    activation=activation,
    init_method=init,
    use_dropout=use_dropout,
    **kwargs,
  )


def _check(field, value, allowed):
  if value not in allowed:
    raise ValueError(f"Unknown {field} {value!r}; allowed values: {sorted(allowed)}.")


__all__ = [
  "ACTIVATIONS",
  "ARCHITECTURES",
  "INITS",
  "INPUT_SIZES",
  "CNNLarge",
  "CNNSmall",
  "MLP",
  "ResNet18",
  "dropout",
  "get_model",
  "image_size",
]
