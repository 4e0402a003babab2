"""STL-10, from tensorflow-datasets."""

from zoo_jax.data.datasets import TFDS_HINT, DatasetInfo

# STL-10: 96x96 resized to 28 (CNN-s) or 32 (CNN-l), (0.5, 0.5) per channel, 4,200/800.
INFO = DatasetInfo("stl10", ("tfds",), 28, 3, (0.5,) * 3, (0.5,) * 3, 800, install_hint=TFDS_HINT)
