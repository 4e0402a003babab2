"""A CPU-sized Fashion-MNIST hyperparameter zoo for the weight-space studies (encoders, sampling).

The Model Zoos hyperparameter grid, thinned to fit 2 CPU cores: 4 activations x dropout
{0, 0.5} x 2 inits x {adam, sgd} x lr {1e-3, 1e-4} x wd {1e-3, 1e-4} x 2 seeds = 256 models,
trained on 3,000 real Fashion-MNIST images (Debian's dataset-fashion-mnist) for 4 epochs,
evaluated on 2,000 test images; every epoch's weights are kept.

  python -m zoo_jax.train --config=configs/studies/study_fmnist_hyp.py --workdir=/tmp/zoo_study_fmnist
"""

import ml_collections

from configs import mnist5k


def get_config() -> ml_collections.ConfigDict:
  c = mnist5k.get_config()
  c.dataset.name = "fashion_mnist"
  c.dataset.train_size = 3000
  c.dataset.eval_size = 2000
  c.population.num_seeds = 2
  c.population.grid.activation = ("tanh", "relu", "sigmoid", "gelu")
  c.population.grid.dropout = (0.0, 0.5)
  c.population.grid.init = ("uniform", "kaiming_uniform")
  c.population.grid.optimizer = ("adam", "sgd")
  c.population.grid.learning_rate = (1e-3, 1e-4)
  c.population.grid.weight_decay = (1e-3, 1e-4)
  c.num_epochs = 4
  c.batch_size = 32
  return c
