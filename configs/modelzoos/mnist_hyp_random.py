"""Model Zoos: MNIST CNN-s hyperparameter zoo, random seeds (tune_zoo_mnist_hyperparameter_10_random_seeds):
the fixed-seed grid, each model seeded from [0, 1e6).

  python -m zoo_jax.train --config=configs/modelzoos/mnist_hyp_random.py --workdir=/tmp/zoo_mnist_hyp_random
"""

import ml_collections

from configs.modelzoos import mnist_hyp_fixed


def get_config() -> ml_collections.ConfigDict:
  c = mnist_hyp_fixed.get_config()
  c.population.random_seeds = True
  return c
