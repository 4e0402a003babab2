"""Model Zoos: CIFAR-10 CNN-l hyperparameter zoo, fixed seeds (the CNN-s grid, 1,280 models).

python -m zoo_jax.train --config=configs/modelzoos/cifar10_l_hyp_fixed.py --workdir=/tmp/zoo_cifar10_l_hyp_fixed
"""

import ml_collections

from configs.modelzoos import cifar10_s_hyp_fixed


def get_config() -> ml_collections.ConfigDict:
  c = cifar10_s_hyp_fixed.get_config()
  c.model.arch = "cnn_l"
  return c
