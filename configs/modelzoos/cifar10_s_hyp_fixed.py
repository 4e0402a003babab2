"""Model Zoos: CIFAR-10 CNN-s hyperparameter zoo, fixed seeds: 4 activations x dropout {0, 0.5} x 4 inits x
{adam, sgd} x lr 1e-3 x wd {1e-2, 1e-3} x 10 seeds = 1,280 models.

  python -m zoo_jax.train --config=configs/modelzoos/cifar10_s_hyp_fixed.py --workdir=/tmp/zoo_cifar10_s_hyp_fixed
"""

import ml_collections

from configs.modelzoos import cifar10_s_seed


def get_config() -> ml_collections.ConfigDict:
  c = cifar10_s_seed.get_config()
  c.population.num_seeds = 10
  c.population.grid.activation = ("tanh", "relu", "sigmoid", "gelu")
  c.population.grid.dropout = (0.0, 0.5)
  c.population.grid.init = ("uniform", "normal", "kaiming_uniform", "kaiming_normal")
  c.population.grid.optimizer = ("adam", "sgd")
  c.population.grid.learning_rate = (1e-3,)
  c.population.grid.weight_decay = (1e-2, 1e-3)
  return c
