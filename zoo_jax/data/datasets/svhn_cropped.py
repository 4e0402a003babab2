"""SVHN (cropped digits), from tensorflow-datasets."""

from zoo_jax.data.datasets import TFDS_HINT, DatasetInfo

# SVHN (the seed zoo): grayscale, centre-cropped to 28x28, (0.5, 0.5); 60,000/13,257.
INFO = DatasetInfo(
  tfds_name="svhn_cropped",
  sources=("tfds",),
  image_size=28,
  channels=1,
  mean=(0.5,),
  std=(0.5,),
  validation_size=13_257,
  resize="crop",
  install_hint=TFDS_HINT,
)
