"""Per-dataset constants and preprocessing of the Model Zoos protocol (Schürholt et al., 2022).

Each dataset has a default protocol, the `INFO` of its module zoo_jax/data/datasets/NAME.py,
read from the zoo generators of the Model Zoos code (code/zoo_generators/train_zoo_*.py):
validation size, how images reach the model's size (torchvision's `Resize` or `CenterCrop`),
grayscale conversion, normalisation. `DATASETS` maps every dataset name, derived ones
(`datasets.DERIVED`: mnist5k_rot90, ...) included, to that protocol.
A zoo may differ from its dataset's default (the ResNet-18 zoos normalise CIFAR-10 with their
own statistics and hold out 10,000 images; the Small CNN Zoo scales to [-1, 1] and takes the
mean of RGB as gray): `resolve(name, preprocess)` applies a config's
`dataset.preprocess` section, whose fields default to None (= the dataset's protocol).
"""

import dataclasses
from typing import Any, Mapping

import numpy as np

from zoo_jax.data import datasets
from zoo_jax.data.datasets import DatasetInfo

RESIZE_METHODS = ("resize", "crop")  # torchvision's Resize (bilinear, antialiased) / CenterCrop
GRAYSCALE_METHODS = ("luma", "mean")  # PIL's convert("L") (torchvision's Grayscale) / mean of RGB
VALIDATION_SPLITS = ("random", "stratified")

# The fields a config's dataset.preprocess section may set (None keeps the dataset's value).
PREPROCESS_FIELDS = (
  "image_size",
  "resize",
  "channels",
  "grayscale",
  "mean",
  "std",
  "validation_size",
  "validation_split",
)

# Every dataset name -> its protocol: the modules of zoo_jax/data/datasets/ and their derived names.
DATASETS: dict[str, DatasetInfo] = datasets.infos()


def resolve(
  name: str, preprocess: Mapping[str, Any] | None = None, image_size: int | None = None
) -> DatasetInfo:
  """The protocol of dataset `name` for one zoo: its defaults, then `image_size` (the model's
  input side), then every non-None field of `preprocess` (a config's dataset.preprocess)."""
  if name not in DATASETS:
    raise ValueError(f"Unknown dataset {name!r}; allowed values: {sorted(DATASETS)}.")
  info = DATASETS[name]
  if image_size is not None:
    info = dataclasses.replace(info, image_size=image_size)
  if hasattr(preprocess, "to_dict"):  # an ml_collections.ConfigDict
    preprocess = preprocess.to_dict()
  changes = {k: v for k, v in dict(preprocess or {}).items() if v is not None}
  check_preprocess(changes)
  for field in ("mean", "std"):
    if field in changes:
      changes[field] = tuple(float(v) for v in changes[field])
  info = dataclasses.replace(info, **changes)
  for field in ("mean", "std"):
    if len(getattr(info, field)) != info.channels:
      raise ValueError(
        f"config.dataset.preprocess.{field} has {len(getattr(info, field))} values for "
        f"{info.channels} channels of {name!r}; give one value per channel."
      )
  return info


def check_preprocess(preprocess: Mapping[str, Any]) -> None:
  """Raises a ValueError naming the first bad field of a dataset.preprocess section."""
  where = "config.dataset.preprocess"
  unknown = set(preprocess) - set(PREPROCESS_FIELDS)
  if unknown:
    raise ValueError(
      f"Unknown {where} fields {sorted(unknown)}; allowed: {list(PREPROCESS_FIELDS)}."
    )
  choices = {
    "resize": RESIZE_METHODS,
    "grayscale": GRAYSCALE_METHODS,
    "validation_split": VALIDATION_SPLITS,
    "channels": (1, 3),
  }
  for field, allowed in choices.items():
    value = preprocess.get(field)
    if value is not None and value not in allowed:
      raise ValueError(f"{where}.{field} {value!r} is unknown; allowed values: {list(allowed)}.")
  for field, low in (("image_size", 1), ("validation_size", 0)):
    value = preprocess.get(field)
    if value is not None and (not isinstance(value, int) or value < low):
      raise ValueError(f"{where}.{field} must be an integer >= {low}, got {value!r}.")
  for field in ("mean", "std"):
    value = preprocess.get(field)
    if value is not None and (
      not isinstance(value, (tuple, list))
      or not value
      or not all(isinstance(v, (int, float)) for v in value)
      or (field == "std" and min(value) <= 0)
    ):
      raise ValueError(
        f"{where}.{field} must be a tuple of numbers (one per channel{', > 0' * (field == 'std')}), "
        f"got {value!r}."
      )


def split_train_validation(
  images: np.ndarray,
  labels: np.ndarray,
  validation_size: int,
  split: str,
  seed: int,
  method: str = "stratified",
) -> tuple[np.ndarray, np.ndarray]:
  """Seeded split of an official train set into its train and validation parts.

  method "random" holds out a uniformly random `validation_size` images (torch's random_split);
  "stratified" holds out validation_size // classes images of every class.
  """
  rng = np.random.default_rng(seed)
  if method == "random":
    if validation_size >= len(labels):
      raise ValueError(
        f"A validation split of {validation_size} images leaves no training images: the train "
        f"set has only {len(labels)} images."
      )
    val_idx = rng.permutation(len(labels))[:validation_size]
  else:
    classes = np.unique(labels)
    per_class = validation_size // len(classes)
    smallest = min(int(np.sum(labels == c)) for c in classes)
    if per_class >= smallest:
      raise ValueError(
        f"A validation split of {validation_size} images ({per_class} per class) leaves no "
        f"training images: the train set has only {smallest} images in its smallest class."
      )
    val_idx = np.concatenate(
      [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    )
  val_mask = np.zeros(len(labels), bool)
  val_mask[val_idx] = True
  mask = val_mask if split == "validation" else ~val_mask
  return images[mask], labels[mask]


def preprocess(images: np.ndarray, info: DatasetInfo, image_size: int | None = None) -> np.ndarray:
  """uint8 NHWC -> uint8 NHWC of the protocol's size and channels (grayscale, then crop or resize)."""
  if images.ndim == 3:
    images = images[..., None]
  if images.shape[-1] == 3 and info.channels == 1:
    if info.grayscale == "mean":  # the Small CNN Zoo (Unterthiner et al., 2020)
      gray = images.mean(-1)
    else:  # ITU-R 601-2 luma, as PIL's convert("L") used by torchvision's Grayscale
      gray = images @ np.array([0.299, 0.587, 0.114])
    images = np.rint(gray).clip(0, 255).astype(np.uint8)[..., None]
  size = image_size or info.image_size
  h, w = images.shape[1:3]
  if (h, w) == (size, size):
    return images
  if info.resize == "crop":
    if h < size or w < size:
      raise ValueError(
        f"Cannot centre-crop {h}x{w} images to {size}x{size}; use preprocess.resize='resize'."
      )
    top, left = (h - size) // 2, (w - size) // 2  # torchvision's CenterCrop (SVHN 32 -> 28)
    return np.ascontiguousarray(images[:, top : top + size, left : left + size])
  return _resize(images, size)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of uint8 NHWC images, antialiased when shrinking (PIL's, hence torchvision's, Resize)."""
  import jax  # local: keeps numpy-only users of this module free of jax start-up

  out = []
  for start in range(0, len(images), 4096):  # bounded memory for large sets
    chunk = images[start : start + 4096]
    resized = jax.image.resize(
      chunk.astype(np.float32),
      (len(chunk), size, size, chunk.shape[-1]),
      "bilinear",
      antialias=True,
    )
    out.append(np.asarray(resized).round().clip(0, 255).astype(np.uint8))
  return np.concatenate(out) if out else np.zeros((0, size, size, images.shape[-1]), np.uint8)
