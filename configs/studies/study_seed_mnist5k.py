"""The generative study's seed zoo on mnist5k: one setting (CNN-s, tanh, kaiming_uniform, Adam
1e-3, batch 10) x 200 seeds, 10 epochs: the single-setting seed zoo that the generative
hyper-representation papers train their autoencoder on, sized to train on 2 CPU cores.

  python -m zoo_jax.train --config=configs/studies/study_seed_mnist5k.py --workdir=/tmp/zoo_seed_mnist5k
"""

import ml_collections

from configs import mnist5k


def get_config() -> ml_collections.ConfigDict:
  c = mnist5k.get_config()
  c.population.num_seeds = 200
  c.num_epochs = 10
  return c
