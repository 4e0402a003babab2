"""Model Zoos: STL-10 CNN-l hyperparameter zoo, fixed seeds (the CNN-s grid, 2,560 models, 32x32).

python -m zoo_jax.train --config=configs/modelzoos/stl10_l_hyp_fixed.py --workdir=/tmp/zoo_stl10_l_hyp_fixed
"""

import ml_collections

from configs.modelzoos import stl10_s_hyp_fixed


def get_config() -> ml_collections.ConfigDict:
  c = stl10_s_hyp_fixed.get_config()
  c.model.arch = "cnn_l"
  return c
