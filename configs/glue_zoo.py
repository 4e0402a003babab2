"""A heterogeneous zoo for Model-GLUE-style merging: two initialisations of CNN-s trained on mnist5k,
each fine-tuned on four domains of its digits (upright, rotated 90 degrees, inverted, noisy) with two
seeds; 16 models, evaluated on the union of the four domains.

  python -m zoo_jax.finetune --config=configs/glue_zoo.py --workdir=/tmp/zoo_glue
  python -m zoo_jax.merge --config=configs/glue.py --zoo=/tmp/zoo_glue --workdir=/tmp/glue
"""

import ml_collections

from configs import finetuned_zoo


def get_config() -> ml_collections.ConfigDict:
  c = finetuned_zoo.get_config()
  c.ancestor.population.num_seeds = 2  # two initialisations: models of different basins
  c.ancestor.num_epochs = 8
  c.finetune.dataset = "mnist5k"  # every domain normalised as mnist5k
  # zoo_jax.data.domains.FAMILIES["shifted_mnist5k"]
  c.finetune.domains = ("mnist5k", "mnist5k_invert", "mnist5k_noise", "mnist5k_rot90")
  c.finetune.num_epochs = 3
  c.finetune.train_size = None  # each domain's 3,500 training digits
  c.finetune.eval_size = None
  c.finetune.num_seeds = 2
  c.finetune.grid.learning_rate = (1e-3,)
  return c
