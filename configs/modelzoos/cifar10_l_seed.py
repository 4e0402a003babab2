"""Model Zoos: CIFAR-10 CNN-l seed zoo (tune_zoo_cifar10_uniform_large): the CNN-s seed setting on 32x32x3.

python -m zoo_jax.train --config=configs/modelzoos/cifar10_l_seed.py --workdir=/tmp/zoo_cifar10_l_seed
"""

import ml_collections

from configs.modelzoos import cifar10_s_seed


def get_config() -> ml_collections.ConfigDict:
  c = cifar10_s_seed.get_config()
  c.model.arch = "cnn_l"
  return c
