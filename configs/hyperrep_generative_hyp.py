"""The generative setting on a slice of a hyperparameter zoo (issue 14): models of one architecture
and activation whose inits, optimisers and learning rates differ.

configs/hyperrep_generative.py plus per-model scaling (`hyperrep.model.model_scaling`): in the tanh
slice of configs/studies/study_mnist5k_hyp.py half the models start from U(0, 1) and stay at chance with
weights several times larger than the Kaiming-initialised models that learn; one layer-wise
normaliser over the slice leaves the learned models tiny and the autoencoder decodes them to chance
(docs/sampling.md). Each model's layers now enter at their own RMS, which joins the latent.

  python -m zoo_jax.train --config=configs/studies/study_mnist5k_hyp.py --workdir=/tmp/zoo_hyp_tanh \
      --config.population.grid.activation='("tanh",)'
  python -m zoo_jax.encode --config=configs/hyperrep_generative_hyp.py --zoo=/tmp/zoo_hyp_tanh --workdir=/tmp/enc_hyp
"""

import ml_collections

from configs import hyperrep_generative


def get_config() -> ml_collections.ConfigDict:
  c = hyperrep_generative.get_config()
  c.epochs = (2, 3, 4)  # the late epochs of a 4-epoch zoo
  c.properties = ("test_acc", "epoch")
  c.hyperrep.model.model_scaling = True
  c.hyperrep.input_scaling = False  # the per-model scale replaces the zoo-wide one
  return c
