"""The Model Zoos Fashion-MNIST hyperparameter zoo (the MNIST grid on Fashion-MNIST, 2,560 models).

python -m zoo_jax.train --config=configs/fashion_mnist_hyp.py --workdir=/tmp/zoo_fmnist_hyp
"""

import ml_collections

from configs import mnist_hyp


def get_config() -> ml_collections.ConfigDict:
  c = mnist_hyp.get_config()
  c.dataset.name = "fashion_mnist"
  c.dataset.source = "local"
  return c
