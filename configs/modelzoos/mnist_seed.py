"""Model Zoos: MNIST CNN-s seed zoo (tune_zoo_mnist_uniform): 1,000 seeds, tanh, U(0,1) init,
Adam 3e-4, no weight decay, batch 10, 50 epochs; 50,000/10,000 split, normalised (0.1307, 0.3081).

  python -m zoo_jax.train --config=configs/modelzoos/mnist_seed.py --workdir=/tmp/zoo_mnist_seed
"""

import ml_collections

from configs import mnist


def get_config() -> ml_collections.ConfigDict:
  c = mnist.get_config()
  return c
