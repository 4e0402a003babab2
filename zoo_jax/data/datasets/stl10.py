"""STL-10, from tensorflow-datasets."""

from zoo_jax.data.datasets import TFDS_HINT, DatasetInfo

# STL-10: 96x96 resized to 28 (CNN-s) or 32 (CNN-l), (0.5, 0.5) per channel, 4,200/800.
INFO = DatasetInfo(
  tfds_name="stl10",
  sources=("tfds",),
  image_size=28,
  channels=3,
  mean=(0.5,) * 3,
  std=(0.5,) * 3,
  validation_size=800,
  install_hint=TFDS_HINT,
)
