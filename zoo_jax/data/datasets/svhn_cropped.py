"""SVHN (cropped digits), from tensorflow-datasets."""

from zoo_jax.data.datasets import TFDS_HINT, DatasetInfo

# SVHN (the seed zoo): grayscale, centre-cropped to 28x28, (0.5, 0.5); 60,000/13,257.
INFO = DatasetInfo(
  "svhn_cropped", ("tfds",), 28, 1, (0.5,), (0.5,), 13_257, resize="crop", install_hint=TFDS_HINT
)
