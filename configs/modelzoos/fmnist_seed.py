"""Model Zoos: Fashion-MNIST CNN-s seed zoo (tune_zoo_f_mnist_uniform): the MNIST seed setting;
50,000/10,000 split, normalised (0.5, 0.5). Read offline from Debian's dataset-fashion-mnist.

  python -m zoo_jax.train --config=configs/modelzoos/fmnist_seed.py --workdir=/tmp/zoo_fmnist_seed
"""

import ml_collections

from configs import fashion_mnist


def get_config() -> ml_collections.ConfigDict:
  c = fashion_mnist.get_config()
  return c
