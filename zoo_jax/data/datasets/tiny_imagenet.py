"""Tiny-ImageNet: the unpacked tiny-imagenet-200 folder (wnids.txt, train/, val/)."""

import numpy as np

from zoo_jax.data import local
from zoo_jax.data.datasets import DatasetInfo

# Tiny-ImageNet (64x64, 200 classes): the ResNet-18 zoo trains on the 100,000 train images
# and tests on the 10,000 'val' images (the official test set has no labels); no validation.
# ImageNet's channel statistics.
INFO = DatasetInfo(
  tfds_name=None,
  sources=("local",),
  image_size=64,
  channels=3,
  mean=(0.485, 0.456, 0.406),
  std=(0.229, 0.224, 0.225),
  validation_size=0,
  num_classes=200,
  install_hint="For source='local', pass data_dir=<the unpacked tiny-imagenet-200 "
  "folder (wnids.txt, train/, val/)>.",
)


def load_local(split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  """train/ ("train") or val/ ("test") of the folder `data_dir` (no default folder)."""
  return local.read_tiny_imagenet(
    local.need_dir(
      data_dir, "tiny_imagenet", "the unpacked tiny-imagenet-200 folder (wnids.txt, train/, val/)"
    ),
    split,
  )
