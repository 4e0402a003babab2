"""Model Zoos: CIFAR-10 CNN-s seed zoo (tune_zoo_cifar10_uniform_small): GELU, kaiming_uniform, Adam 1e-4,
weight decay 1e-2, 1,000 seeds; images resized 32 -> 28 (not cropped), (0.5, 0.5), 42,000/8,000 split.

  python -m zoo_jax.train --config=configs/modelzoos/cifar10_s_seed.py --workdir=/tmp/zoo_cifar10_s_seed
"""

import ml_collections

from configs import cifar10


def get_config() -> ml_collections.ConfigDict:
  c = cifar10.get_config()
  return c
