"""Model Zoos: Fashion-MNIST CNN-s hyperparameter zoo, fixed seeds (the MNIST grid, 2,560 models).

python -m zoo_jax.train --config=configs/modelzoos/fmnist_hyp_fixed.py --workdir=/tmp/zoo_fmnist_hyp_fixed
"""

import ml_collections

from configs import fashion_mnist_hyp


def get_config() -> ml_collections.ConfigDict:
  c = fashion_mnist_hyp.get_config()
  return c
