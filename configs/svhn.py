"""The Model Zoos SVHN seed zoo: the MNIST seed setting with Adam lr 3e-3, on SVHN turned to
grayscale and centre-cropped to 28x28 (tensorflow-datasets' svhn_cropped).

  python -m zoo_jax.train --config=configs/svhn.py --workdir=/tmp/zoo_svhn
"""

import ml_collections

from configs import mnist


def get_config() -> ml_collections.ConfigDict:
  c = mnist.get_config()
  c.dataset.name = "svhn_cropped"
  c.population.grid.learning_rate = (3e-3,)
  return c
