"""Model Zoos: USPS CNN-s hyperparameter zoo, fixed seeds: 4 activations x dropout {0, 0.5} x 4 inits x
{adam, sgd} x lr {1e-3, 1e-4} x wd {1e-2, 1e-3} x 10 seeds = 2,560 models (data as usps_seed.py).

  python -m zoo_jax.train --config.dataset.data_dir=DIR --config=configs/modelzoos/usps_hyp_fixed.py --workdir=/tmp/zoo_usps_hyp_fixed
"""

import ml_collections

from configs import mnist_hyp


def get_config() -> ml_collections.ConfigDict:
  c = mnist_hyp.get_config()
  c.dataset.name = "usps"
  c.dataset.source = "local"
  c.population.grid.weight_decay = (1e-2, 1e-3)
  return c
