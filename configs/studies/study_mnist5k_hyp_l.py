"""The mnist5k hyperparameter study grid with CNN-l: the cross-architecture test zoo of the
encoders (train on CNN-s, test on CNN-l, and back).

Same grid and epochs as configs/studies/study_mnist5k_hyp.py (128 models, one seed); CNN-l reads
the digits resized to 32x32 (its conv_0 has one input channel here).

  python -m zoo_jax.train --config=configs/studies/study_mnist5k_hyp_l.py --workdir=/tmp/zoo_study_mnist5k_l
"""

import ml_collections

from configs.studies import study_mnist5k_hyp


def get_config() -> ml_collections.ConfigDict:
  c = study_mnist5k_hyp.get_config()
  c.model.arch = "cnn_l"
  return c
