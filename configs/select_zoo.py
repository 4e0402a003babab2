"""A varied zoo for model selection: 64 CNN-s on mnist5k, the source zoo of configs/select.py.

4 activations x 2 inits x 2 learning rates x 4 seeds, trained 4 epochs on 1,500 digits, so the
zoo spans good, mediocre and untrained-looking models (U(0,1) init, small learning rate) and a
ranking of them for another dataset means something. About 3 min on 2 CPU cores:

  python -m zoo_jax.train --config=configs/select_zoo.py --workdir=/tmp/zoo_select
"""

import ml_collections

from configs import mnist5k


def get_config() -> ml_collections.ConfigDict:
  c = mnist5k.get_config()
  c.dataset.train_size = 1500
  c.dataset.eval_size = 500
  c.population.num_seeds = 4
  c.population.grid.activation = ("tanh", "relu", "gelu", "sigmoid")
  c.population.grid.init = ("kaiming_uniform", "uniform")
  c.population.grid.learning_rate = (3e-3, 3e-4)
  c.num_epochs = 4
  return c
