"""Model Zoos: SVHN CNN-s hyperparameter zoo, random seeds (the fixed-seed grid and data).

python -m zoo_jax.train --config=configs/modelzoos/svhn_hyp_random.py --workdir=/tmp/zoo_svhn_hyp_random
"""

import ml_collections

from configs.modelzoos import svhn_hyp_fixed


def get_config() -> ml_collections.ConfigDict:
  c = svhn_hyp_fixed.get_config()
  c.population.random_seeds = True
  return c
