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
  # "by_model": a seeded split of the models per seed. "small_cnn_zoo": the protocol of the NFN
  # papers on the Small CNN Zoo: final checkpoints only, one fixed shuffle of the models with
  # the last half tested, the same split for every seed.
  c.split.protocol = "by_model"
  # None: every training model; an integer: that many of them (seeded), the test models unchanged:
  # a learning curve over zoo size.
  c.split.train_models = ml_collections.config_dict.placeholder(int)
  c.split.train_zoos = (
    1  # the first N --zoo dirs are pooled for training; the others are cross test sets
  )

  # Predictors on fixed features: "ridge" (closed form, regularisation 0.3), "gbt" (sklearn
  # histogram gradient boosting), "mlp" (multi-task MLP below).
  c.predictors = ("gbt", "mlp")
  # Ranked targets and BCE: a higher Kendall tau than z-scores and MSE on all three study zoos
  # (docs/weight_space.md), at some cost in R^2.
  c.mlp = training(num_epochs=60, targets="rank", loss="bce")
  c.mlp.hidden = (128, 128)

  c.progress_bar = True
  return c


def training(
  num_epochs: int,
  batch_size: int = 64,
  learning_rate: float = 1e-3,
  weight_decay: float = 1e-4,
  targets: str = "standard",
  loss: str = "mse",
  rank_weight: float = 0.0,
  validation_fraction: float = 0.0,
) -> ml_collections.ConfigDict:
  """The section of a neural predictor (c.mlp; c.train of the end-to-end encoders): AdamW, the
  objective (zoo_jax.encoders.properties.Objective) and the validation split."""
  t = ml_collections.ConfigDict()
  t.num_epochs = num_epochs
  t.batch_size = batch_size
  t.learning_rate = learning_rate
  t.weight_decay = weight_decay
  t.targets = targets  # "standard" (z-scores) | "unit" (min-max to [0, 1]) | "rank" (training CDF)
  t.loss = loss  # "mse" | "bce" (sigmoid output; targets "unit" or "rank")
  t.rank_weight = rank_weight  # weight of a pairwise ranking loss on the regression outputs
  # Share of the training models held out to pick the epoch of best Kendall tau of `select_on`
  # (0: no validation split, the last epoch is kept).
  t.validation_fraction = validation_fraction
  t.select_on = "test_acc"
  return t
