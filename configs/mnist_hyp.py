"""The Model Zoos MNIST hyperparameter zoo: 4 activations x dropout {0, 0.5} x 4 inits x
{adam, sgd} x lr {1e-3, 1e-4} x wd {1e-3, 1e-4} x 10 seeds = 2,560 CNN-s models.

  python -m zoo_jax.train --config=configs/mnist_hyp.py --workdir=/tmp/zoo_mnist_hyp
"""

import ml_collections

from configs import mnist


def get_config() -> ml_collections.ConfigDict:
  c = mnist.get_config()
  c.population.num_seeds = 10
  c.population.grid.activation = ("tanh", "relu", "sigmoid", "gelu")
  c.population.grid.dropout = (0.0, 0.5)
  c.population.grid.init = ("uniform", "normal", "kaiming_uniform", "kaiming_normal")
  c.population.grid.optimizer = ("adam", "sgd")
  c.population.grid.learning_rate = (1e-3, 1e-4)
  c.population.grid.weight_decay = (1e-3, 1e-4)
  return c
