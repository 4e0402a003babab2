"""CIFAR-100, from tensorflow-datasets."""

from zoo_jax.data.datasets import TFDS_HINT, DatasetInfo

# CIFAR-100 as the ResNet-18 zoo reads it: 40,000/10,000 and the CIFAR-100 channel statistics.
INFO = DatasetInfo(
  tfds_name="cifar100",
  sources=("tfds",),
  image_size=32,
  channels=3,
  mean=(0.5071, 0.4867, 0.4408),
  std=(0.2675, 0.2565, 0.2761),
  validation_size=10_000,
  num_classes=100,
  install_hint=TFDS_HINT,
)
