"""Datasets, one file each: `config.dataset.name` (and `zoo_jax.data.load(name, ...)`) names a module here.

Contract: a module NAME.py exposes
  INFO: DatasetInfo      the dataset's Model Zoos protocol (sources, image size and channels,
                         normalisation, validation split, install hint): the default that a zoo's
                         dataset.preprocess section departs from (protocol.resolve);
  load_local(split, data_dir) -> (images, labels)
                         only when "local" is one of INFO.sources: the official "train" or "test"
                         split as uint8 images [N, H, W] or [N, H, W, C] and int labels [N], read
                         without network from `data_dir` (None: the dataset's default, or an error
                         naming what to pass).
The "tfds" source needs nothing more than INFO.tfds_name (zoo_jax/data/tfds.py reads it). Readers
shared by several datasets (IDX files, USPS' bz2 files, the Tiny-ImageNet folder, mnist5k's csv)
live in zoo_jax/data/local.py.

Derived datasets have no file: "BASE_SUFFIX", where SUFFIX is a key of `DERIVED` and BASE a dataset
with a local source (mnist5k_rot90, fashion_mnist_invert, ...), is BASE with every image transformed:
same labels, splits and install hint, normalisation adjusted by the transform, local source only.

Adding a dataset is one new file here plus a config that names it (c.dataset.name = "NAME");
`protocol.DATASETS` (name -> DatasetInfo, derived names included) and `data.load` pick it up.
Modules whose names start with `_` are private helpers, not datasets.
"""

import dataclasses
from types import ModuleType
from typing import Callable

import numpy as np

from zoo_jax import registry


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
  resize: str = "resize"  # how images reach image_size: protocol.RESIZE_METHODS
  grayscale: str = (
    "luma"  # how RGB becomes one channel when channels == 1: protocol.GRAYSCALE_METHODS
  )
  # "random": a seeded uniformly random subset, as torch.utils.data.random_split in the Model
  # Zoos (same sizes, not the same images: torch's generator and the file order differ);
  # "stratified": the same number of images per class.
  validation_split: str = "random"


# The install hint of every dataset with a "tfds" source.
TFDS_HINT = (
  "Install the tfds extra (pip install 'zoo_jax[tfds]') and run with network access, "
  "or point data_dir at a prepared tensorflow-datasets folder."
)


@dataclasses.dataclass(frozen=True)
class Derived:
  """One transform of derived datasets: of every image, and of the protocol to match."""

  images: Callable[[np.ndarray], np.ndarray]  # uint8 [N, H, W(, C)] -> uint8 of the same shape
  info: Callable[[DatasetInfo], DatasetInfo] = lambda info: info


def _rotate(degrees: float) -> Callable[[np.ndarray], np.ndarray]:
  """Every image rotated by `degrees` counter-clockwise about its centre (bilinear, black corners)."""

  def rotate(images: np.ndarray) -> np.ndarray:
    if degrees % 360 == 0:
      return images
    import scipy.ndimage  # imported on use: only rotated domains need it

    out = scipy.ndimage.rotate(
      images.astype(np.float32), degrees, axes=(2, 1), reshape=False, order=1, mode="constant"
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)

  return rotate


def _noise(images: np.ndarray) -> np.ndarray:
  """Additive Gaussian pixel noise, std 64 of 255, from a fixed seed (the same noise on every load)."""
  noise = np.random.default_rng(0).normal(0.0, 64.0, images.shape)
  return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)


# Derived datasets. zoo_jax.select trains its learned ranker on rot90 / invert; the DomainBed
# rotations rot0 ... rot75 and the other shifts (invert, noise) are domains (zoo_jax.data.domains).
# Inverted images have mean 1 - mean; the other transforms keep the base's normalisation.
DERIVED = {
  **{f"rot{d}": Derived(_rotate(d)) for d in (0, 15, 30, 45, 60, 75)},
  "rot90": Derived(lambda images: np.ascontiguousarray(np.rot90(images, 1, axes=(1, 2)))),
  "invert": Derived(
    lambda images: 255 - images,
    lambda info: dataclasses.replace(info, mean=tuple(1.0 - m for m in info.mean)),
  ),
  "noise": Derived(_noise),
}


def names() -> tuple[str, ...]:
  """The datasets with a file here (derived names excluded), sorted."""
  return registry.names(__name__)


def get(name: str) -> ModuleType:
  """The module of dataset `name` (not a derived name); an unknown name is a ValueError listing the known ones."""
  return registry.load(__name__, name, "dataset")


def derived(name: str) -> tuple[str, str] | None:
  """(BASE, SUFFIX) when `name` is the derived dataset BASE_SUFFIX, else None."""
  base, _, suffix = name.rpartition("_")
  if (
    name in names()
    or suffix not in DERIVED
    or base not in names()
    or "local" not in get(base).INFO.sources
  ):
    return None
  return base, suffix


def infos() -> dict[str, DatasetInfo]:
  """Every dataset name -> its protocol: each module's INFO, then every derived BASE_SUFFIX."""
  table = {name: get(name).INFO for name in names()}
  for base, info in list(table.items()):
    if "local" in info.sources:
      for suffix, transform in DERIVED.items():
        table.setdefault(
          f"{base}_{suffix}",
          transform.info(dataclasses.replace(info, tfds_name=None, sources=("local",))),
        )
  return table
