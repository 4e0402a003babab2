"""The Model Zoos CIFAR-10 seed zoo with CNN-l (32x32x3, 10,853 parameters), same training setting
as configs/cifar10.py.

  python -m zoo_jax.train --config=configs/cifar10_large.py --workdir=/tmp/zoo_cifar10_large
"""

import ml_collections

from configs import cifar10


def get_config() -> ml_collections.ConfigDict:
  c = cifar10.get_config()
  c.model.arch = "cnn_l"
  return c
