"""Model Zoos: SVHN CNN-s seed zoo (tune_zoo_svhn_uniform): tanh, U(0,1) init, Adam 3e-3, no weight decay,
1,000 seeds; grayscale, centre crop 32 -> 28, normalised (0.5, 0.5), 60,000/13,257 split.

  python -m zoo_jax.train --config=configs/modelzoos/svhn_seed.py --workdir=/tmp/zoo_svhn_seed
"""

import ml_collections

from configs import svhn


def get_config() -> ml_collections.ConfigDict:
  c = svhn.get_config()
  return c
