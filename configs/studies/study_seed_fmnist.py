"""The generative study's seed zoo on Fashion-MNIST (Debian's package, offline): the mnist5k
seed setting (CNN-s, tanh, kaiming_uniform, Adam 1e-3, batch 10) x 200 seeds, 10 epochs, on a
seeded 5,000-image training subset and 2,000-image validation and test subsets (CPU-sized).

  python -m zoo_jax.train --config=configs/studies/study_seed_fmnist.py --workdir=/tmp/zoo_seed_fmnist
"""

import ml_collections

from configs.studies import study_seed_mnist5k


def get_config() -> ml_collections.ConfigDict:
  c = study_seed_mnist5k.get_config()
  c.dataset.name = "fashion_mnist"
  c.dataset.train_size = 5000
  c.dataset.eval_size = 2000
  return c
