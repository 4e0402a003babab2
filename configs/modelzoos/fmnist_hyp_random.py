"""Model Zoos: Fashion-MNIST CNN-s hyperparameter zoo, random seeds.

python -m zoo_jax.train --config=configs/modelzoos/fmnist_hyp_random.py --workdir=/tmp/zoo_fmnist_hyp_random
"""

import ml_collections

from configs.modelzoos import fmnist_hyp_fixed


def get_config() -> ml_collections.ConfigDict:
  c = fmnist_hyp_fixed.get_config()
  c.population.random_seeds = True
  return c
