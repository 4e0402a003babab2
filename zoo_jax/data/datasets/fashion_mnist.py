"""Fashion-MNIST: Debian's dataset-fashion-mnist IDX files (or any folder of them), or tensorflow-datasets."""

import numpy as np

from zoo_jax.data import local
from zoo_jax.data.datasets import TFDS_HINT, DatasetInfo

INFO = DatasetInfo(
  tfds_name="fashion_mnist",
  sources=("local", "tfds"),
  image_size=28,
  channels=1,
  mean=(0.5,),
  std=(0.5,),
  validation_size=10_000,
  install_hint="Install it with: sudo apt-get install dataset-fashion-mnist "
  "(Debian/Ubuntu), or pass data_dir=<folder of IDX .gz files>; " + TFDS_HINT,
)


def load_local(split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  """The IDX files of `data_dir`, by default those of Debian's package (local.FASHION_MNIST_DIR)."""
  return local.read_idx_split(
    data_dir or local.FASHION_MNIST_DIR,
    split,
    "fashion_mnist",
    missing_hint="Install it with: sudo apt-get install dataset-fashion-mnist",
  )
