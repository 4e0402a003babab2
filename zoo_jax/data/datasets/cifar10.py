"""CIFAR-10, from tensorflow-datasets."""

from zoo_jax.data.datasets import TFDS_HINT, DatasetInfo

# CIFAR-10: 42,000/8,000, (0.5, 0.5) per channel; resized 32 -> 28 for CNN-s (not cropped).
INFO = DatasetInfo(
  tfds_name="cifar10",
  sources=("tfds",),
  image_size=32,
  channels=3,
  mean=(0.5,) * 3,
  std=(0.5,) * 3,
  validation_size=8_000,
  install_hint=TFDS_HINT,
)
