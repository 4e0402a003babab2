"""Model Zoos: USPS CNN-s hyperparameter zoo, random seeds.

python -m zoo_jax.train --config.dataset.data_dir=DIR --config=configs/modelzoos/usps_hyp_random.py --workdir=/tmp/zoo_usps_hyp_random
"""

import ml_collections

from configs.modelzoos import usps_hyp_fixed


def get_config() -> ml_collections.ConfigDict:
  c = usps_hyp_fixed.get_config()
  c.population.random_seeds = True
  return c
