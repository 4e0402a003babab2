"""Model Zoos: STL-10 CNN-l hyperparameter zoo, random seeds.

python -m zoo_jax.train --config=configs/modelzoos/stl10_l_hyp_random.py --workdir=/tmp/zoo_stl10_l_hyp_random
"""

import ml_collections

from configs.modelzoos import stl10_l_hyp_fixed


def get_config() -> ml_collections.ConfigDict:
  c = stl10_l_hyp_fixed.get_config()
  c.population.random_seeds = True
  return c
