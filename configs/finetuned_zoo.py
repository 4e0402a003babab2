"""A fine-tuned zoo: one CNN-s ancestor trained on mnist5k, then fine-tunes of it on Fashion-MNIST
with different seeds (data order) and learning rates: the input of model soups and task arithmetic.

  python -m zoo_jax.finetune --config=configs/finetuned_zoo.py --workdir=/tmp/zoo_finetuned
"""

import ml_collections

from configs import mnist5k


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.ancestor = mnist5k.get_config()  # any train config of exactly one model
  c.ancestor.population.num_seeds = 1
  c.ancestor.num_epochs = 8
  c.ancestor.population.grid.activation = ("relu",)

  c.finetune = ml_collections.ConfigDict()
  c.finetune.dataset = "fashion_mnist"  # a key of zoo_jax.data.DATASETS with the ancestor's classes
  c.finetune.num_epochs = 2
  c.finetune.train_size = 3000  # a seeded subset of the training images; None: all
  c.finetune.eval_size = 1000  # validation and test images; None: all
  c.finetune.num_seeds = (
    4  # fine-tunes per grid setting; the seed sets the data order (and dropout)
  )
  c.finetune.first_seed = 1
  # Domains (dataset names of one task, e.g. zoo_jax.data.domains.FAMILIES[...]): each ancestor
  # fine-tuned on each, the zoo evaluated on their union (configs/glue_zoo.py); None: `dataset` only.
  c.finetune.domains = ml_collections.config_dict.placeholder(tuple)
  c.finetune.grid = ml_collections.ConfigDict()  # the product of these x seeds; one row each
  c.finetune.grid.optimizer = ("adam",)
  c.finetune.grid.learning_rate = (1e-3, 3e-4)
  c.finetune.grid.weight_decay = (0.0,)
  c.finetune.grid.dropout = (0.0,)
  return c
