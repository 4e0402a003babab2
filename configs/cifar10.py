"""The Model Zoos CIFAR-10 seed zoo with CNN-s (3 channels, images resized to 28x28): GELU,
kaiming_uniform init, Adam 1e-4, weight decay 1e-2, batch 10, 50 epochs, 1,000 seeds.

  python -m zoo_jax.train --config=configs/cifar10.py --workdir=/tmp/zoo_cifar10
"""

import ml_collections

from configs import mnist


def get_config() -> ml_collections.ConfigDict:
  c = mnist.get_config()
  c.dataset.name = "cifar10"
  c.population.grid.activation = ("gelu",)
  c.population.grid.init = ("kaiming_uniform",)
  c.population.grid.learning_rate = (1e-4,)
  c.population.grid.weight_decay = (1e-2,)
  return c
