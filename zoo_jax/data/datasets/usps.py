"""USPS: 16x16 digits from the libsvm files torchvision's USPS downloads (usps.bz2, usps.t.bz2)."""

import numpy as np

from zoo_jax.data import local
from zoo_jax.data.datasets import DatasetInfo

# USPS: 16x16 digits resized to 28x28, MNIST's normalisation, 6,000/1,291 of the 7,291 train digits.
INFO = DatasetInfo(
  tfds_name=None,
  sources=("local",),
  image_size=28,
  channels=1,
  mean=(0.1307,),
  std=(0.3081,),
  validation_size=1_291,
  install_hint="For source='local', pass data_dir=<folder with usps.bz2 and usps.t.bz2> "
  "(the libsvm files torchvision's USPS downloads).",
)


def load_local(split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  """usps.bz2 ("train") or usps.t.bz2 ("test") of `data_dir` (no default folder)."""
  return local.read_usps(
    local.need_dir(data_dir, "usps", "usps.bz2 and usps.t.bz2 (the libsvm files of USPS)"), split
  )
