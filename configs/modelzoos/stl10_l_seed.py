"""Model Zoos: STL-10 CNN-l seed zoo (tune_zoo_stl_uniform_large): the CNN-s seed setting, resized to 32x32.

python -m zoo_jax.train --config=configs/modelzoos/stl10_l_seed.py --workdir=/tmp/zoo_stl10_l_seed
"""

import ml_collections

from configs.modelzoos import stl10_s_seed


def get_config() -> ml_collections.ConfigDict:
  c = stl10_s_seed.get_config()
  c.model.arch = "cnn_l"
  return c
