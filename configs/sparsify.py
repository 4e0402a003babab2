"""Sparsified twins (variational dropout, as the Model Zoos' CNN_ARD zoos) of a zoo's last-epoch models.

python -m zoo_jax.sparsify --config=configs/sparsify.py --zoo=/tmp/zoo_mnist5k --workdir=/tmp/twin_mnist5k
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.num_epochs = 25  # sparsification epochs (the published twins: 25)
  c.batch_size = ml_collections.config_dict.placeholder(int)  # None: the source zoo's batch size
  c.eval_batch_size = 500
  c.kl_max = 1e-2  # kl_weight = min(1, kl_max * epoch / num_epochs), as in the Model Zoos code
  c.threshold = 3.0  # weights with log alpha >= threshold are dropped
  c.log_sigma2_init = -10.0  # initial log sigma^2 of every weight (ard_init)
  return c
