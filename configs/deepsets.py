"""DeepSets over neuron tokens: a permutation-invariant baseline (more invariance than the
networks' true symmetry: it also ignores which layer feeds which), trained multi-task.

  python -m zoo_jax.encode --config=configs/deepsets.py --zoo=/tmp/zoo_study_fmnist --workdir=/tmp/enc_deepsets
"""

import ml_collections

from configs import statnn


def get_config() -> ml_collections.ConfigDict:
  c = statnn.get_config()
  c.method = "deepsets"
  c.predictors = ()
  c.deepsets = ml_collections.ConfigDict()
  c.deepsets.model = ml_collections.ConfigDict()  # fields of zoo_jax.encoders.baselines.DeepSets
  c.train = ml_collections.ConfigDict()
  c.train.num_epochs = 30
  c.train.batch_size = 64
  c.train.learning_rate = 1e-3
  c.train.weight_decay = 1e-4
  return c
