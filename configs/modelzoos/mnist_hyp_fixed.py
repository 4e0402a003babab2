"""Model Zoos: MNIST CNN-s hyperparameter zoo, fixed seeds 1..10 (tune_zoo_mnist_hyperparameter_10_fixed_seeds):
4 activations x dropout {0, 0.5} x 4 inits x {adam, sgd} x lr {1e-3, 1e-4} x wd {1e-3, 1e-4} x 10 seeds = 2,560.

  python -m zoo_jax.train --config=configs/modelzoos/mnist_hyp_fixed.py --workdir=/tmp/zoo_mnist_hyp_fixed
"""

import ml_collections

from configs import mnist_hyp


def get_config() -> ml_collections.ConfigDict:
  c = mnist_hyp.get_config()
  return c
