"""Model Zoos: STL-10 CNN-s seed zoo (tune_zoo_stl_small_uniform): tanh, kaiming_uniform, Adam 1e-4, weight
decay 1e-3, 1,000 seeds; 96x96 resized to 28x28, (0.5, 0.5), 4,200/800 split.

  python -m zoo_jax.train --config=configs/modelzoos/stl10_s_seed.py --workdir=/tmp/zoo_stl10_s_seed
"""

import ml_collections

from configs import mnist


def get_config() -> ml_collections.ConfigDict:
  c = mnist.get_config()
  c.dataset.name = "stl10"
  c.population.grid.init = ("kaiming_uniform",)
  c.population.grid.learning_rate = (1e-4,)
  c.population.grid.weight_decay = (1e-3,)
  return c
