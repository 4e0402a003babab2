"""The Model Zoos Fashion-MNIST seed zoo (the MNIST seed setting on Fashion-MNIST), read
offline from Debian's dataset-fashion-mnist package (apt-get install dataset-fashion-mnist):

  python -m zoo_jax.train --config=configs/fashion_mnist.py --workdir=/tmp/zoo_fmnist

With the tfds extra and a network, --config.dataset.source=tfds reads it from tfds instead.
"""

import ml_collections

from configs import mnist


def get_config() -> ml_collections.ConfigDict:
  c = mnist.get_config()
  c.dataset.name = "fashion_mnist"
  c.dataset.source = "local"
  return c
