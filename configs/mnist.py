"""The Model Zoos MNIST seed zoo: CNN-s, tanh, U(0,1) init, Adam 3e-4, no weight decay,
batch 10, 50 epochs, 1,000 seeds (Schürholt et al., 2022).

Needs the full MNIST through tensorflow-datasets (network, or a prepared data_dir):
  pip install -e '.[tfds]'
  python -m zoo_jax.train --config=configs/mnist.py --workdir=/tmp/zoo_mnist
"""

import ml_collections

from configs import mnist5k


def get_config() -> ml_collections.ConfigDict:
  c = mnist5k.get_config()
  c.dataset.name = "mnist"
  c.dataset.source = "tfds"
  c.population.num_seeds = 1000
  c.population.grid.init = ("uniform",)
  c.population.grid.learning_rate = (3e-4,)
  c.num_epochs = 50
  c.eval_batch_size = 1000
  c.models_per_vmap = 0  # the whole cohort in one vmap: these zoos are meant for an accelerator
  c.eval_models_per_vmap = None  # as models_per_vmap
  c.conv_impl = "xla"  # "taps" wins on CPU (configs/mnist5k.py); on GPU/TPU it is unmeasured
  return c
