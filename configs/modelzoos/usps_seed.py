"""Model Zoos: USPS CNN-s seed zoo (tune_zoo_usps_uniform): tanh, U(0,1) init, Adam 3e-4, weight decay
1e-3, 1,000 seeds; 16x16 digits resized to 28x28, normalised (0.1307, 0.3081), 6,000/1,291 split.

USPS is read from DIR, the folder of its original libsvm files (usps.bz2, usps.t.bz2):

  python -m zoo_jax.train --config.dataset.data_dir=DIR --config=configs/modelzoos/usps_seed.py --workdir=/tmp/zoo_usps_seed
"""

import ml_collections

from configs import mnist


def get_config() -> ml_collections.ConfigDict:
  c = mnist.get_config()
  c.dataset.name = "usps"
  c.dataset.source = "local"
  c.population.grid.weight_decay = (1e-3,)
  return c
