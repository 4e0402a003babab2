"""Baselines on the raw flat weight vector: closed-form ridge (the Model Zoos linear probe) and an MLP.

python -m zoo_jax.encode --config=configs/flat.py --zoo=/tmp/zoo_study_fmnist --workdir=/tmp/enc_flat
"""

import ml_collections

from configs import statnn


def get_config() -> ml_collections.ConfigDict:
  c = statnn.get_config()
  c.method = "flat"
  c.predictors = ("ridge", "mlp")
  return c
