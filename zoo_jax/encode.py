"""Learn on weights: train an encoder or baseline on zoos, predict every property, score it.

  python -m zoo_jax.encode --config=configs/hyperrep.py --zoo=DIR [--zoo=DIR2 ...] --workdir=OUT

The first `config.split.train_zoos` zoos are pooled and split by model (seeded, per seed);
held-out models give the in-distribution scores, and every further zoo is a cross-dataset
(or, for SNE, cross-architecture) test set scored whole. Writes to OUT:

  config.json              the config, the zoos and what was read from them (zoo_jax.zoo.guard:
                           epochs, models, a fingerprint of the states); a rerun resumes, computes
                           again from a zoo that grew (config.epochs None or negative), or is refused
  results.csv              method x predictor x property x metric x test set: mean, std over seeds
  results_per_seed.csv     the same per seed (a killed run resumes after its last finished seed)
  predictions.csv          seed 0's predictions of every test state
  test_acc.png             predicted vs true test accuracy (seed 0), one panel per test set
  embeddings.npz           seed 0's embedding of every state (learned encoders)
  encoder/                 seed 0's trained hyper-representation autoencoder (for zoo_jax.sample)
  checkpoints/             Orbax checkpoints of every training, resumed after a crash

`config.method` names a file of zoo_jax/encoders/methods/ (the contract is there). A seed runs in
named steps: `split_seed`, then `predict_with_features` (features, then each predictor) or
`predict_directly` (a network trained on the properties), then `score_rows`.
"""

if __name__ == "__main__":
  # The workdir's writer lock before the slow imports below (jax, orbax: seconds), so a second
  # run into a busy workdir is refused at once.
  from zoo_jax import cli as _cli

  _cli.lock_workdir_early()


import contextlib
import json
import os
from typing import Sequence

import jax
import ml_collections
import numpy as np
import pandas as pd

from zoo_jax.zoo import guard
from zoo_jax import plots
from zoo_jax.encoders import properties, states as states_lib, streaming
from zoo_jax import zoo as zoo_lib
from zoo_jax.encoders import ENCODER_DIR, methods
from zoo_jax.encoders.states import ZooStates, load_states  # noqa: F401 (encode.load_states, encode.ZooStates: their old home)

# Predictors on fixed features (StatNN statistics, flat weights, hyper-representation embeddings).
FEATURE_PREDICTORS = ("ridge", "gbt", "mlp")
RESULTS_FILE, PER_SEED_FILE, PREDICTIONS_FILE = (
  "results.csv",
  "results_per_seed.csv",
  "predictions.csv",
)
IN_DISTRIBUTION = "in_distribution"
# Everything a run writes besides its record (config.json): what a rerun on a grown zoo recomputes.
OUTPUTS = (
  RESULTS_FILE,
  PER_SEED_FILE,
  PREDICTIONS_FILE,
  "test_acc.png",
  "embeddings.npz",
  ENCODER_DIR,
  "checkpoints",
)
# Methods that train and embed on minibatches, so their states may stay on disk (config.stream).
STREAMING_METHODS = ("hyperrep",)


def __getattr__(name: str):
  if name == "METHODS":  # every encode method (zoo_jax/encoders/methods/), found when asked
    return methods.names()
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def validate_config(config: ml_collections.ConfigDict, num_zoos: int) -> None:
  """Checks the fields once, early; errors name the field and the allowed values."""
  method = methods.get(config.method)
  properties.check_properties(config.properties)
  for name in config.get("predictors", ()):
    if name not in FEATURE_PREDICTORS:
      raise ValueError(
        f"config.predictors has {name!r}; allowed values: {list(FEATURE_PREDICTORS)}."
      )
  if isinstance(method, methods.FeatureMethod) and not config.get("predictors"):
    raise ValueError(
      f"config.predictors is empty; method {config.method!r} needs at least one of "
      f"{list(FEATURE_PREDICTORS)}."
    )
  if not isinstance(config.num_seeds, int) or config.num_seeds < 1:
    raise ValueError(f"config.num_seeds must be an integer >= 1, got {config.num_seeds!r}.")
  if not isinstance(config.split.train_zoos, int) or not 1 <= config.split.train_zoos <= num_zoos:
    raise ValueError(
      f"config.split.train_zoos must be an integer in [1, {num_zoos}] (the number of "
      f"--zoo directories), got {config.split.train_zoos!r}."
    )
  if num_zoos < 1:
    raise ValueError("Give at least one --zoo=DIR.")
  keep = config.split.get("train_models")
  if keep is not None and (not isinstance(keep, int) or keep < 1):
    raise ValueError(
      f"config.split.train_models must be None (every training model) or an integer >= 1, "
      f"got {keep!r}."
    )
  protocol = config.split.get("protocol", "by_model")
  if protocol not in properties.SPLIT_PROTOCOLS:
    raise ValueError(
      f"config.split.protocol is {protocol!r}; allowed values: {list(properties.SPLIT_PROTOCOLS)}."
    )
  if protocol == "small_cnn_zoo" and config.get("epochs") not in (None, (-1,)):
    raise ValueError(
      "config.split.protocol='small_cnn_zoo' reads the final checkpoints only; leave "
      f"config.epochs unset or (-1,) (got {config.get('epochs')!r})."
    )
  for field in ("mlp", "train"):  # the neural predictors' objective and validation split
    if field in config:
      properties.Objective.from_config(config[field], field)
      fraction = config[field].get("validation_fraction", 0.0)
      if not (isinstance(fraction, (int, float)) and 0.0 <= fraction < 1.0):
        raise ValueError(
          f"config.{field}.validation_fraction must be in [0, 1) (0: no validation split), "
          f"got {fraction!r}."
        )
  if config.get("stream", False) not in (True, False):
    raise ValueError(f"config.stream must be True or False, got {config.stream!r}.")
  if config.get("stream", False):
    if config.method not in STREAMING_METHODS:
      raise ValueError(
        f"config.stream=True reads weights from disk in batches, which method {config.method!r} "
        f"does not; allowed with methods {list(STREAMING_METHODS)}, or set config.stream=False."
      )
    if config.split.train_zoos > 1:
      raise ValueError(
        "config.stream=True trains on one zoo; set config.split.train_zoos=1 (further --zoo "
        "directories are test sets) or config.stream=False."
      )
    if not config.get("stream_buffer_mb", 0) > 0:
      raise ValueError(
        f"config.stream_buffer_mb must be > 0 (MB of states in the shuffle buffer), got "
        f"{config.get('stream_buffer_mb')!r}."
      )


# ---------------------------------------------------------------------------- one seed, step by step


def _fit_features(
  config,
  predictor: str,
  targets: properties.Targets,
  train_x: np.ndarray,
  train_table: pd.DataFrame,
  test_x: dict[str, np.ndarray],
  seed: int,
  checkpoint_dir: str,
) -> dict[str, dict[str, np.ndarray]]:
  """Predictions {test set: {property: values}} of one predictor on fixed features."""
  if predictor in ("ridge", "gbt"):  # one fit per property, predicting every test set at once
    names = list(test_x)
    bounds = np.cumsum([0] + [len(test_x[n]) for n in names])
    every = np.concatenate([test_x[n] for n in names])
    out = {name: {} for name in names}
    for prop in targets.names:
      y = properties.Targets.raw(train_table, prop)
      predicted = properties.fit_probe(predictor, train_x, y, every, seed=seed)
      for i, name in enumerate(names):
        out[name][prop] = predicted[bounds[i] : bounds[i + 1]]
    return out
  # "mlp": one multi-task MLP on standardised features, clipped to +-5 std: weight statistics
  # are heavy-tailed (U(0,1)-initialised models), and an MLP extrapolates wildly beyond them.
  mean, std = train_x.mean(0), train_x.std(0) + 1e-8
  scale = lambda x: np.clip((x - mean) / std, -5.0, 5.0)
  module = properties.MLP(hidden=tuple(config.mlp.hidden), num_outputs=targets.num_outputs)
  params, targets = train_neural(
    config, "mlp", module, scale(train_x), train_table, seed, checkpoint_dir, f"mlp seed {seed}"
  )
  predict = properties.make_predict(module.apply)
  return {name: targets.decode(predict(params, scale(x))) for name, x in test_x.items()}


def train_neural(
  config: ml_collections.ConfigDict,
  field: str,
  module,
  inputs,
  table: pd.DataFrame,
  seed: int,
  checkpoint_dir: str,
  desc: str,
  **kwargs,
) -> tuple[object, properties.Targets]:
  """A neural predictor (the MLP probe, field "mlp"; a direct method's network, field "train")
  trained on the properties of `table`'s states as `config.<field>` says: optimisation, the
  objective (`targets`, `loss`, `rank_weight`: properties.Objective) and the validation split
  (`validation_fraction`, best epoch by the Kendall tau of `select_on`). Returns (params, the
  targets that decode its outputs)."""
  section = config[field]
  targets = properties.Targets(
    table, config.properties, properties.Objective.from_config(section, field)
  )
  params, _ = properties.train_predictor(
    module,
    inputs,
    table,
    targets,
    key=jax.random.key(seed),
    num_epochs=section.num_epochs,
    batch_size=section.batch_size,
    learning_rate=section.learning_rate,
    weight_decay=section.weight_decay,
    validation_fraction=section.get("validation_fraction", 0.0),
    select_on=section.get("select_on", "test_acc"),
    seed=seed,
    checkpoint_dir=checkpoint_dir,
    progress=config.progress_bar,
    desc=desc,
    **kwargs,
  )
  return params, targets


def split_seed(
  config: ml_collections.ConfigDict, pool: ZooStates, others: Sequence[ZooStates], seed: int
) -> tuple[np.ndarray, ZooStates, dict[str, ZooStates]]:
  """The seed's split of the pool by model: (is_test [N], is_train [N], training states, test sets
  by name). `split.train_models` keeps that many of the training models (a seeded draw; a learning
  curve over zoo size on the same test models); the rest of the pool is neither."""
  if config.split.get("protocol", "by_model") == "small_cnn_zoo":
    # The NFN papers' split of the Small CNN Zoo: one fixed shuffle of the models, the last half
    # tested; every seed sees the same split and varies only the training.
    is_test = properties.split_by_model(pool.table, 0.5, seed=0)
  else:
    is_test = properties.split_by_model(pool.table, config.split.test_fraction, seed)
  is_train = ~is_test
  keep = config.split.get("train_models")
  if keep is not None:
    keys = pool.keys()
    models = np.unique(keys[is_train].to_numpy())
    if keep > len(models):  # (its type and sign are checked in validate_config)
      raise ValueError(
        f"config.split.train_models must be None or an integer in [1, {len(models)}] (the "
        f"training models of this split), got {keep!r}."
      )
    chosen = np.random.default_rng(seed + 1).permutation(models)[:keep]
    is_train = is_train & keys.isin(set(chosen)).to_numpy()
  test_sets = {IN_DISTRIBUTION: pool.rows(is_test), **{f"cross:{z.name}": z for z in others}}
  return is_test, is_train, pool.rows(is_train), test_sets


def _readable(
  method, train: ZooStates, test_sets: dict[str, ZooStates]
) -> tuple[list[str], dict[str, str]]:
  """The test sets the method can read, and {test set: why not} for the others."""
  if method.cross_architecture:
    return list(test_sets), {}
  readable = [n for n, z in test_sets.items() if z.spec == train.spec]
  return readable, {n: "another architecture" for n in test_sets if n not in readable}


def predict_with_features(
  method: methods.FeatureMethod,
  fit: methods.Fit,
  targets: properties.Targets,
  pool: ZooStates,
  is_test: np.ndarray,
  is_train: np.ndarray,
  test_sets: dict[str, ZooStates],
  readable: Sequence[str],
  checkpoint_dir: str,
) -> tuple[dict, dict[str, np.ndarray]]:
  """Features of every readable zoo, then each predictor fitted on the training rows (checkpoints in
  checkpoint_dir/<predictor>).

  Returns (predictions {predictor: {test set: {property: values}}}, embeddings {zoo: [N, D]}).
  """
  featurize = method.featurizer(fit)
  # Features of whole zoos, then split: the pool's rows are featurized once, not per side.
  zoos = [pool, *(test_sets[n] for n in readable if n != IN_DISTRIBUTION)]
  features = {z.name: featurize(z) for z in zoos}
  test_x = {
    n: features[pool.name][is_test] if n == IN_DISTRIBUTION else features[test_sets[n].name]
    for n in readable
  }
  predictions = {
    predictor: _fit_features(
      fit.config,
      predictor,
      targets,
      features[pool.name][is_train],
      fit.train.table,
      test_x,
      fit.seed,
      os.path.join(checkpoint_dir, predictor),
    )
    for predictor in fit.config.predictors
  }
  return predictions, (features if method.embeddings else {})


def predict_directly(
  method: methods.DirectMethod,
  fit: methods.Fit,
  targets: properties.Targets,
  test_sets: dict[str, ZooStates],
  readable: Sequence[str],
) -> tuple[dict, dict[str, np.ndarray]]:
  """The method's network trained on the training states' properties, then run on each readable test set.

  Returns (predictions {"direct": {test set: {property: values}}}, embeddings {zoo: [N, D]}).
  """
  network = method.build(fit, targets.num_outputs)
  params, targets = train_neural(
    fit.config,
    "train",
    network.module,
    network.inputs(fit.train),
    fit.train.table,
    fit.seed,
    fit.checkpoint_dir,
    f"{fit.config.method} seed {fit.seed}",
    **network.train_kwargs,
  )
  predict = properties.make_predict(network.module.apply)
  predictions = {
    "direct": {n: targets.decode(predict(params, network.inputs(test_sets[n]))) for n in readable}
  }
  embeddings = (
    {} if network.embed is None else {z.name: network.embed(params, z) for z in fit.everything}
  )
  return predictions, embeddings


def score_rows(
  method_name: str,
  seed: int,
  predictions: dict,
  test_sets: dict[str, ZooStates],
  skipped: dict[str, str],
  targets: properties.Targets,
) -> tuple[pd.DataFrame, pd.DataFrame]:
  """Book the scores (one row per predictor x test set x property x metric, plus an n/a row for each
  unreadable test set and constant property) and the predictions beside the truth."""
  rows, prediction_rows = [], []
  for predictor, by_set in predictions.items():
    for test_set, by_prop in by_set.items():
      table = test_sets[test_set].table
      frame = table[["zoo", "model_id", "epoch"]].copy()
      for prop, values in by_prop.items():
        truth = properties.Targets.raw(table, prop)
        for metric, value in properties.score(prop, truth, values).items():
          rows.append(
            dict(
              seed=seed,
              method=method_name,
              predictor=predictor,
              test_set=test_set,
              property=prop,
              metric=metric,
              value=value,
            )
          )
        frame[f"{prop}_true"], frame[f"{prop}_pred"] = truth, values
      frame.insert(0, "test_set", test_set)
      frame.insert(0, "predictor", predictor)
      prediction_rows.append(frame)
  for test_set, why in skipped.items():
    rows.append(
      dict(
        seed=seed,
        method=method_name,
        predictor="-",
        test_set=test_set,
        property="-",
        metric=f"n/a: {why}",
        value=np.nan,
      )
    )
  for prop in targets.skipped:
    rows.append(
      dict(
        seed=seed,
        method=method_name,
        predictor="-",
        test_set="-",
        property=prop,
        metric="n/a: constant in the training split",
        value=np.nan,
      )
    )
  return pd.DataFrame(rows), pd.concat(prediction_rows, ignore_index=True)


def _run_seed(
  config: ml_collections.ConfigDict,
  pool: ZooStates,
  others: Sequence[ZooStates],
  seed: int,
  workdir: str,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
  """Trains and scores one seed; returns (scores, predictions, embeddings {zoo: [N, D]})."""
  method = methods.get(config.method)
  is_test, is_train, train, test_sets = split_seed(config, pool, others, seed)
  targets = properties.Targets(train.table, config.properties)
  held_out = frozenset(pool.keys()[is_test])
  checkpoint_dir = os.path.join(workdir, "checkpoints", f"seed_{seed}")
  fit = methods.Fit(
    config,
    train,
    [pool, *others],
    seed,
    checkpoint_dir=os.path.join(checkpoint_dir, config.method),
    save_dir=os.path.join(workdir, ENCODER_DIR) if seed == 0 else None,
    held_out=held_out,
  )
  readable, skipped = _readable(method, train, test_sets)
  if isinstance(method, methods.FeatureMethod):
    predictions, embeddings = predict_with_features(
      method, fit, targets, pool, is_test, is_train, test_sets, readable, checkpoint_dir
    )
  else:
    predictions, embeddings = predict_directly(method, fit, targets, test_sets, readable)
  scores, prediction_table = score_rows(
    config.method, seed, predictions, test_sets, skipped, targets
  )
  return scores, prediction_table, embeddings


# ---------------------------------------------------------------------------- the job


def summarize(per_seed: pd.DataFrame) -> pd.DataFrame:
  """Mean and spread (std over seeds) of every score."""
  scored = per_seed.dropna(subset=["value"])
  keys = ["method", "predictor", "test_set", "property", "metric"]
  table = scored.groupby(keys, sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
  return table.rename(columns={"count": "seeds"})


def encode_and_evaluate(
  config: ml_collections.ConfigDict, zoo_dirs: Sequence[str], workdir: str
) -> pd.DataFrame:
  """The whole job: every seed trained and scored (resuming finished seeds), tables and plot written."""
  validate_config(config, len(zoo_dirs))
  with guard.writing(workdir):  # the lock first: one writer per workdir
    return _encode_and_evaluate(config, zoo_dirs, workdir)


def _encode_and_evaluate(
  config: ml_collections.ConfigDict, zoo_dirs: Sequence[str], workdir: str
) -> pd.DataFrame:
  record = {"config": json.loads(config.to_json()), "zoos": [os.path.abspath(d) for d in zoo_dirs]}
  record["config"].pop("progress_bar", None)
  if not config.get("stream", False):  # results do not depend on it
    record["config"].pop("stream", None), record["config"].pop("stream_buffer_mb", None)

  hygiene = config.get("filter", {})
  stream = dict(stream=config.get("stream", False), buffer_mb=config.get("stream_buffer_mb", 64.0))
  states = [load_states(d, _epochs(config), **dict(hygiene), **stream) for d in zoo_dirs]
  for s in states:
    print(s.hygiene)
  names = [s.name for s in states]
  if len(set(names)) != len(names):
    raise ValueError(
      f"--zoo directories must have distinct names (got {names}); they label the test sets."
    )
  train_specs = {s.spec for s in states[: config.split.train_zoos]}
  if len(train_specs) > 1 and not methods.get(config.method).cross_architecture:
    raise ValueError(
      f"config.split.train_zoos pools zoos of {len(train_specs)} architectures; method "
      f"{config.method!r} reads one (the methods that train on mixed architectures: "
      f"{[n for n in methods.names() if methods.get(n).cross_architecture]})."
    )
  read = []
  for d, s in zip(zoo_dirs, states):
    with contextlib.closing(zoo_lib.Zoo(d)) as z:
      read.append(guard.read_record(z, s.table))
  # Inputs read and checked: now the workdir is claimed (or found to be this run's, or refused).
  guard.claim(
    workdir,
    record,
    read=read,
    follow_newest=_follows_newest(_epochs(config)),
    outputs=OUTPUTS,
    holds="results of another config or other zoos",
  )
  print(f"read {guard.describe(read)}")
  train_zoos = states[: config.split.train_zoos]
  pool = train_zoos[0] if len(train_zoos) == 1 else states_lib.pool(train_zoos)
  others = states[config.split.train_zoos :]

  per_seed_path = os.path.join(workdir, PER_SEED_FILE)
  per_seed = pd.read_csv(per_seed_path) if os.path.exists(per_seed_path) else pd.DataFrame()
  done = set(per_seed["seed"]) if len(per_seed) else set()
  for seed in range(config.num_seeds):
    if seed in done:
      continue
    scores, predictions, embeddings = _run_seed(config, pool, others, seed, workdir)
    if seed == 0:
      zoo_lib.write_table_atomic(predictions, os.path.join(workdir, PREDICTIONS_FILE))
      if embeddings:
        np.savez(
          os.path.join(workdir, "embeddings.npz"),
          **{
            f"{name}/{key}": value
            for name, z in embeddings.items()
            for key, value in (
              ("embedding", z),
              ("model_id", _by_name(states, pool, name).table["model_id"].to_numpy()),
              ("epoch", _by_name(states, pool, name).table["epoch"].to_numpy()),
            )
          },
        )
    per_seed = pd.concat([per_seed, scores], ignore_index=True)
    zoo_lib.write_table_atomic(per_seed, per_seed_path)  # a finished seed is never redone
  results = summarize(per_seed)
  zoo_lib.write_table_atomic(results, os.path.join(workdir, RESULTS_FILE))
  if os.path.exists(os.path.join(workdir, PREDICTIONS_FILE)):
    plots.test_accuracy(
      pd.read_csv(os.path.join(workdir, PREDICTIONS_FILE)),
      os.path.join(workdir, "test_acc.png"),
      f"{config.method}: test accuracy from weights",
    )
  return results


def _epochs(config: ml_collections.ConfigDict) -> tuple[int, ...] | None:
  """The epochs read from each zoo: config.epochs (None: all), the final ones under the Small CNN
  Zoo protocol."""
  if config.split.get("protocol", "by_model") == "small_cnn_zoo":
    return (-1,)
  return config.get("epochs")


def _follows_newest(epochs) -> bool:
  """True when config.epochs takes a zoo's newest epochs (None: every epoch; a negative one)."""
  return epochs is None or any(e < 0 for e in epochs)


def _by_name(states, pool, name):
  return pool if name == pool.name else next(s for s in states if s.name == name)


def _format(results: pd.DataFrame) -> str:
  table = results.copy()
  table["score"] = [
    f"{m:.3f} ± {s:.3f}" if np.isfinite(s) else f"{m:.3f}"
    for m, s in zip(table["mean"], table["std"].fillna(np.nan))
  ]
  return table.pivot_table(
    index=["predictor", "property"], columns=["test_set", "metric"], values="score", aggfunc="first"
  ).to_string()


if __name__ == "__main__":
  from absl import flags
  from ml_collections import config_flags

  from zoo_jax import cli

  _CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Encoder config file.", lock_config=True
  )
  _ZOOS = flags.DEFINE_multi_string(
    "zoo", None, "Zoo workdir(s); the first split.train_zoos train."
  )
  _WORKDIR = flags.DEFINE_string("workdir", None, "Where results and checkpoints go.")
  flags.mark_flags_as_required(["config", "zoo", "workdir"])

  def main(argv):
    del argv
    if _CONFIG.value.get("stream"):  # memory bounded by the shuffle buffer, not the zoo
      streaming.bound_malloc()
    results = encode_and_evaluate(_CONFIG.value, _ZOOS.value, _WORKDIR.value)
    print(_format(results))
    print(f"results: {os.path.join(_WORKDIR.value, RESULTS_FILE)}")

  cli.run(main)
