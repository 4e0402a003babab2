"""An independent-seed zoo for merging: 8 CNN-s on mnist5k, ReLU, differing only in their seed.

Weight averaging of such models needs the hidden units aligned first (zoo_jax.merge). About 2 min:
  python -m zoo_jax.train --config=configs/merge_seed_zoo.py --workdir=/tmp/zoo_seeds
"""

import ml_collections

from configs import mnist5k


def get_config() -> ml_collections.ConfigDict:
  c = mnist5k.get_config()
  c.population.num_seeds = 8
  c.population.grid.activation = ("relu",)
  c.num_epochs = 8
  return c
