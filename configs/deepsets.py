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
  c.train = statnn.training(num_epochs=30)  # the supervised multi-task training
  return c
