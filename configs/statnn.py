"""StatNN (Unterthiner et al., 2020): per-layer weight statistics -> gradient-boosted trees and an MLP.

Also the base of the other encoder configs (hyperrep.py, sne.py, flat.py, deepsets.py):

  python -m zoo_jax.encode --config=configs/statnn.py --zoo=/tmp/zoo_study_fmnist --workdir=/tmp/enc_statnn
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = "statnn"  # a file of zoo_jax/encoders/methods/: statnn, flat, deepsets, sne, hyperrep
  # Predicted properties (zoo_jax.encoders.properties.PROPERTIES); those constant in a zoo are skipped.
  c.properties = (
    "test_acc",
    "gen_gap",
    "epoch",
    "learning_rate",
    "weight_decay",
    "dropout",
    "activation",
    "init",
    "optimizer",
  )
  c.epochs = ml_collections.config_dict.placeholder(tuple)  # None: every stored epoch, 0 included
  c.num_seeds = 3  # seeds of split and training; results give mean and std over them
  # Zoo hygiene (zoo_jax.weights.filter_states): states with a non-finite entry, or a layer whose RMS
  # exceeds max_ratio x that layer's median over the zoo (blown-up, still "ok"), are dropped.
  c.filter = ml_collections.ConfigDict()
  c.filter.max_ratio = 10.0  # None: keep blown-up states
  c.filter.max_abs = ml_collections.config_dict.placeholder(
    float
  )  # None: no absolute |w| threshold

  c.split = ml_collections.ConfigDict()
  c.split.test_fraction = (
    0.2  # held-out share of the training zoos' models (all epochs of a model together)
  )
  c.split.train_zoos = (
    1  # the first N --zoo dirs are pooled for training; the others are cross test sets
  )

  # Predictors on fixed features: "ridge" (closed form, regularisation 0.3), "gbt" (sklearn
  # histogram gradient boosting), "mlp" (multi-task MLP below).
  c.predictors = ("gbt", "mlp")
  c.mlp = ml_collections.ConfigDict()
  c.mlp.hidden = (128, 128)
  c.mlp.num_epochs = 60
  c.mlp.batch_size = 64
  c.mlp.learning_rate = 1e-3
  c.mlp.weight_decay = 1e-4

  c.progress_bar = True
  return c
