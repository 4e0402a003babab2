"""Model Zoos: CIFAR-10 CNN-s hyperparameter zoo, random seeds.

python -m zoo_jax.train --config=configs/modelzoos/cifar10_s_hyp_random.py --workdir=/tmp/zoo_cifar10_s_hyp_random
"""

import ml_collections

from configs.modelzoos import cifar10_s_hyp_fixed


def get_config() -> ml_collections.ConfigDict:
  c = cifar10_s_hyp_fixed.get_config()
  c.population.random_seeds = True
  return c
