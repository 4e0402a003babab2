"""Learn on weights: train an encoder or baseline on zoos, predict every property, score it.

  python -m zoo_jax.encode --config=configs/hyperrep.py --zoo=DIR [--zoo=DIR2 ...] --workdir=OUT

The first `config.split.train_zoos` zoos are pooled and split by model (seeded, per seed);
held-out models give the in-distribution scores, and every further zoo is a cross-dataset
(or, for SNE, cross-architecture) test set scored whole. Writes to OUT:

  config.json              the config and the zoos
  results.csv              method x predictor x property x metric x test set: mean, std over seeds
  results_per_seed.csv     the same per seed (a killed run resumes after its last finished seed)
  predictions.csv          seed 0's predictions of every test state
  test_acc.png             predicted vs true test accuracy (seed 0), one panel per test set
  embeddings.npz           seed 0's embedding of every state (learned encoders)
  encoder/                 seed 0's trained hyper-representation autoencoder (for zoo_jax.sample)
  checkpoints/             Orbax checkpoints of every training, resumed after a crash
"""

if __name__ == "__main__":
  # The workdir's writer lock before the slow imports below (jax, orbax: seconds), so a second
  # run into a busy workdir is refused at once.
  from zoo_jax import cli as _cli
  _cli.lock_workdir_early()


import dataclasses
import json
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd

from zoo_jax import lock, properties, weights
from zoo_jax import zoo as zoo_lib
from zoo_jax.encoders import training
from zoo_jax.weights import spec as weight_spec

METHODS = ("statnn", "flat", "deepsets", "sne", "hyperrep")
# Predictors on fixed features (StatNN statistics, flat weights, hyper-representation embeddings).
FEATURE_PREDICTORS = ("ridge", "gbt", "mlp")
RESULTS_FILE, PER_SEED_FILE, PREDICTIONS_FILE = "results.csv", "results_per_seed.csv", "predictions.csv"
IN_DISTRIBUTION = "in_distribution"
ENCODER_DIR = "encoder"


@dataclasses.dataclass
class ZooStates:
  """The usable states of one zoo: their table and their weights, row for row."""

  name: str
  table: pd.DataFrame
  flat: np.ndarray  # [N, n] float32, in weights.flatten order (or a StreamedFlat read on demand)
  spec: weights.WeightSpec
  hygiene: str = ""  # what the state filter kept and dropped (weights.filter_states), one line
  cache: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, compare=False, repr=False)

  def rows(self, keep: np.ndarray) -> "ZooStates":
    return ZooStates(self.name, self.table[keep].reset_index(drop=True), self.flat[keep], self.spec,
                     self.hygiene)


def load_states(workdir: str, epochs: Sequence[int] | None = None, *,
                max_ratio: float | None = weights.hygiene.DEFAULT_MAX_RATIO,
                max_abs: float | None = None) -> ZooStates:
  """Reads every usable (model, epoch) state of a zoo: the property table and flat weights.

  Usable: status "ok" (properties.state_table) and passing `weights.filter_states` (finite, no
  blown-up layer; `max_ratio` and `max_abs` as there), so encoders and samplers see the same
  states. `ZooStates.hygiene` says how many were dropped.
  """
  zoo = zoo_lib.Zoo(workdir)
  table = properties.state_table(zoo, epochs)
  flats, spec = [], None
  for epoch, rows in table.groupby("epoch", sort=True):  # the table is sorted by (epoch, model_id)
    vector, spec = weights.flatten(zoo.params(rows["model_id"].to_numpy(), epoch))
    flats.append(np.asarray(vector, np.float32))
  zoo.close()
  name = table["zoo"].iloc[0]
  checked = weights.filter_states(np.concatenate(flats), spec, max_ratio=max_ratio, max_abs=max_abs)
  states = ZooStates(name, table, np.concatenate(flats), spec, checked.summary(name))
  if not checked.keep.any():
    raise ValueError(f"{states.hygiene}: no usable state is left in {workdir}.")
  return states.rows(checked.keep)


class StreamedFlat:
  """A zoo's (model, epoch) states as flat weights [N, n] read from disk on demand.

  `x[index]` (ints, slices, masks) reads only those states (zoo.read_rows over TensorStore
  handles opened once per epoch and cohort, no chunk cache), so memory is bounded by the
  batch, not the zoo. It stands where an [N, n] array does in `encoders.training.fit` (shuffled
  minibatches, the same batches as in memory) and `training.map_batches` (embedding every
  state). A random-access source (len, getitem), the protocol grain's data sources follow.
  """

  def __init__(self, zoo: zoo_lib.Zoo, table: pd.DataFrame):
    self.zoo = zoo
    self.epoch = table["epoch"].to_numpy()
    rows = zoo.models.set_index("model_id").loc[table["model_id"].to_numpy()]
    self.cohort, self.cohort_index = rows["cohort"].to_numpy(), rows["cohort_index"].to_numpy()
    self._handles: dict[tuple[int, int], Any] = {}
    # One context for all handles: no chunk cache and one I/O thread each, so memory stays the batch's.
    self._context = zoo_lib.ts.Context({"cache_pool": {"total_bytes_limit": 0}, "data_copy_concurrency": {"limit": 1},
                                        "file_io_concurrency": {"limit": 1}})
    self.spec = weights.flatten(zoo.params(table["model_id"].to_numpy()[:1], int(self.epoch[0])))[1]
    self.shape, self.dtype, self.ndim = (len(table), self.spec.size), np.dtype(np.float32), 2

  def __len__(self) -> int:
    return self.shape[0]

  def _opened(self, epoch: int, cohort: int):
    if (epoch, cohort) not in self._handles:
      opened = zoo_lib.open_cohorts(self.zoo._manager, epoch, [cohort], context=self._context)
      if opened is None:
        raise ValueError(f"Zoo {self.zoo.workdir!r} was written in an older checkpoint layout; streaming needs "
                         "TensorStore (OCDBT) steps. Rewrite it with `python -m zoo_jax.zoo slice`.")
      self._handles[epoch, cohort] = opened[cohort]
    return self._handles[epoch, cohort]

  def _read(self, index: np.ndarray) -> np.ndarray:
    parts, where = [], []
    for epoch, cohort in sorted(set(zip(self.epoch[index].tolist(), self.cohort[index].tolist()))):
      at = np.flatnonzero((self.epoch[index] == epoch) & (self.cohort[index] == cohort))
      params = zoo_lib.read_rows({cohort: self._opened(epoch, cohort)}, {cohort: self.cohort_index[index[at]]})
      # weights.flatten's layout, in numpy: eager jnp ops would compile once per group size.
      arrays, batch = weight_spec.layer_arrays(params[cohort], self.spec)
      parts.append(np.concatenate([np.reshape(layer[p.name], batch + (p.size,)) for layer, layer_spec in
                                   zip(arrays, self.spec.layers) for p in layer_spec.params], -1).astype(np.float32))
      where.append(at)
    out = np.empty((len(index), parts[0].shape[1]), np.float32)
    for at, part in zip(where, parts):
      out[at] = part
    return out

  def __getitem__(self, index) -> np.ndarray:
    return self._read(np.arange(len(self))[index].reshape(-1))

  def __array__(self, dtype=None, copy=None):  # the whole zoo: only for zoos that fit
    return self[:].astype(dtype or self.dtype)


def stream_states(workdir: str, epochs: Sequence[int] | None = None) -> ZooStates:
  """`load_states` for zoos larger than memory: the same table, weights read on demand (StreamedFlat)."""
  zoo = zoo_lib.Zoo(workdir)
  table = properties.state_table(zoo, epochs)
  flat = StreamedFlat(zoo, table)
  return ZooStates(table["zoo"].iloc[0], table, flat, flat.spec)


def validate_config(config: ml_collections.ConfigDict, num_zoos: int) -> None:
  """Checks the fields once, early; errors name the field and the allowed values."""
  if config.method not in METHODS:
    raise ValueError(f"config.method {config.method!r} is unknown; allowed values: {list(METHODS)}.")
  properties.check_properties(config.properties)
  for name in config.get("predictors", ()):
    if name not in FEATURE_PREDICTORS:
      raise ValueError(f"config.predictors has {name!r}; allowed values: {list(FEATURE_PREDICTORS)}.")
  if config.method in ("statnn", "flat", "hyperrep") and not config.get("predictors"):
    raise ValueError(f"config.predictors is empty; method {config.method!r} needs at least one of "
                     f"{list(FEATURE_PREDICTORS)}.")
  if not isinstance(config.num_seeds, int) or config.num_seeds < 1:
    raise ValueError(f"config.num_seeds must be an integer >= 1, got {config.num_seeds!r}.")
  if not isinstance(config.split.train_zoos, int) or not 1 <= config.split.train_zoos <= num_zoos:
    raise ValueError(f"config.split.train_zoos must be an integer in [1, {num_zoos}] (the number of "
                     f"--zoo directories), got {config.split.train_zoos!r}.")
  if num_zoos < 1:
    raise ValueError("Give at least one --zoo=DIR.")


# ---------------------------------------------------------------------------- inputs per method


def _statnn(states: ZooStates) -> np.ndarray:
  """StatNN features [N, F], computed once per zoo and kept for the other seeds."""
  if "statnn" not in states.cache:
    params = weights.unflatten(jnp.asarray(states.flat), states.spec)
    states.cache["statnn"] = np.asarray(weights.statnn_features(params, states.spec), np.float32)
  return states.cache["statnn"]


class _Inputs:
  """Turns states into a method's inputs; `permuted(key)` for SNE's logit invariance."""

  def __init__(self, config: ml_collections.ConfigDict, everything: Sequence[ZooStates], train: ZooStates):
    self.config, self.method = config, config.method
    if self.method == "sne":
      from zoo_jax.encoders import sne
      size = config.sne.model.chunk_size
      self.num_chunks = max(weights.chunk_layout(z.spec, size).index.shape[0] for z in everything)
      # Input scaling: each architecture's layers divided by their std over the training states
      # (another architecture's: over its own zoo's states), or raw weights.
      scales = {}
      for z in [train, *everything]:
        if config.sne.get("input_scaling", False) and z.spec not in scales:
          scales[z.spec] = sne.layer_scales(z.flat, z.spec)
      self._chunk = {z.spec: sne.make_chunker(z.spec, size, self.num_chunks, scales.get(z.spec))
                     for z in everything}
      self._permuted = {z.spec: sne.make_permuted_chunker(z.spec, size, self.num_chunks, scales.get(z.spec))
                        for z in everything}
    elif self.method == "deepsets":
      self.token_dim = max(weights.token_dim(z.spec) for z in everything)

  def __call__(self, states: ZooStates) -> Any:
    if self.method == "sne":
      return training.map_batches(self._chunk[states.spec], states.flat, 512)
    if self.method == "deepsets":
      tokens, _ = weights.tokenize(weights.unflatten(jnp.asarray(states.flat), states.spec), states.spec,
                                   dim=self.token_dim)
      return jax.tree.map(np.asarray, tokens)
    raise AssertionError(self.method)

  def permuted(self, states: ZooStates):
    fn = self._permuted[states.spec]
    return lambda key: training.map_batches(lambda x: fn(key, x), states.flat, 512)


def _train_hyperrep(config: ml_collections.ConfigDict, train: ZooStates, checkpoint_dir: str, seed: int,
                    save_dir: str | None, held_out: Sequence[str] = ()):
  """Trains the autoencoder self-supervised on the training states; returns `states -> z [N, D]`."""
  from zoo_jax.encoders import hyperrep
  h = config.hyperrep
  model = hyperrep.make_model(train.spec, per_layer=h.get("per_layer", False), **h.model.to_dict())
  tokens, _ = weights.tokenize(weights.unflatten(jnp.asarray(train.flat), train.spec), train.spec)
  # The layer-wise normaliser comes from the (filtered) training states only.
  layer_variance = weights.token_layer_variances(tokens, len(train.spec.layers))
  init_key, fit_key = jax.random.split(jax.random.key(seed))
  params = hyperrep.init(init_key, model)
  # A step budget (num_steps) sets the epochs: ceil(num_steps / steps per epoch).
  steps_per_epoch = max(len(train.flat) // min(h.batch_size, len(train.flat)), 1)
  num_epochs = h.num_epochs if h.get("num_steps") is None else -(-h.num_steps // steps_per_epoch)
  tx = hyperrep.make_optimizer(h.learning_rate, schedule=h.get("schedule", "constant"),
                               total_steps=num_epochs * steps_per_epoch, warmup_steps=h.get("warmup_steps", 0))
  step = hyperrep.make_train_step(model, tx, spec=train.spec, layer_variance=layer_variance, gamma=h.gamma,
                                  temperature=h.temperature, noise=h.noise, erase_p=h.erase_p,
                                  permute=h.permute, reduction=h.get("reduction", "layer_mean"),
                                  target=h.get("target", "clean"))
  params, _, history = training.fit(step, params, tx.init(params), train.flat, key=fit_key,
                                    num_epochs=num_epochs, batch_size=h.batch_size,
                                    checkpoint_dir=checkpoint_dir, progress=config.progress_bar,
                                    desc=f"hyperrep seed {seed}")
  if save_dir is not None:
    # held_out_models: "zoo/model_id" keys kept out of its training (zoo_jax.sample checks decoding on them).
    hyperrep.save(save_dir, model, params, train.spec, layer_variance=layer_variance, history=history,
                  held_out_models=sorted(held_out))
  embed = hyperrep.make_embed(model, train.spec)
  return lambda states: np.asarray(embed(params, jnp.asarray(states.flat)))


# ---------------------------------------------------------------------------- one seed


def _fit_features(config, predictor: str, targets: properties.Targets, train_x: np.ndarray,
                  train_table: pd.DataFrame, test_x: dict[str, np.ndarray], seed: int,
                  checkpoint_dir: str) -> dict[str, dict[str, np.ndarray]]:
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
        out[name][prop] = predicted[bounds[i]:bounds[i + 1]]
    return out
  # "mlp": one multi-task MLP on standardised features, clipped to +-5 std: weight statistics
  # are heavy-tailed (U(0,1)-initialised models), and an MLP extrapolates wildly beyond them.
  mean, std = train_x.mean(0), train_x.std(0) + 1e-8
  scale = lambda x: np.clip((x - mean) / std, -5.0, 5.0)
  reg, cls = targets.encode(train_table)
  module = properties.MLP(hidden=tuple(config.mlp.hidden), num_outputs=targets.num_outputs)
  params, _ = properties.train_predictor(
      module, scale(train_x), reg, cls, targets.num_classes, key=jax.random.key(seed),
      num_epochs=config.mlp.num_epochs, batch_size=config.mlp.batch_size,
      learning_rate=config.mlp.learning_rate, weight_decay=config.mlp.weight_decay,
      checkpoint_dir=checkpoint_dir, progress=config.progress_bar, desc=f"mlp seed {seed}")
  predict = properties.make_predict(module.apply)
  return {name: targets.decode(predict(params, scale(x))) for name, x in test_x.items()}


def _run_seed(config: ml_collections.ConfigDict, pool: ZooStates, others: Sequence[ZooStates], seed: int,
              workdir: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
  """Trains and scores one seed; returns (scores, predictions, embeddings {zoo: [N, D]})."""
  is_test = properties.split_by_model(pool.table, config.split.test_fraction, seed)
  train, test_sets = pool.rows(~is_test), {IN_DISTRIBUTION: pool.rows(is_test)}
  test_sets.update({f"cross:{z.name}": z for z in others})
  targets = properties.Targets(train.table, config.properties)
  ckpt = os.path.join(workdir, "checkpoints", f"seed_{seed}")
  method = config.method
  embeddings: dict[str, np.ndarray] = {}
  predictions: dict[str, dict[str, dict[str, np.ndarray]]] = {}  # predictor -> test set -> property
  skipped: dict[str, str] = {}

  if method in ("statnn", "flat", "hyperrep"):
    readable = [z for z in others if z.spec == train.spec or method == "statnn"]
    skipped.update({f"cross:{z.name}": "another architecture" for z in others
                    if z.spec != train.spec and method != "statnn"})
    if method == "statnn":
      featurize = _statnn
    elif method == "flat":
      featurize = lambda z: z.flat
    else:
      held_out = set(pool.table["zoo"][is_test].astype(str) + "/" + pool.table["model_id"][is_test].astype(str))
      featurize = _train_hyperrep(config, train, os.path.join(ckpt, "hyperrep"), seed,
                                  save_dir=os.path.join(workdir, ENCODER_DIR) if seed == 0 else None,
                                  held_out=held_out)
    # Features of whole zoos, then split: the pool's rows are featurized once, not per side.
    features = {z.name: featurize(z) for z in [pool, *readable]}
    if method == "hyperrep":
      embeddings = features
    train_x = features[pool.name][~is_test]
    test_x = {IN_DISTRIBUTION: features[pool.name][is_test], **{f"cross:{z.name}": features[z.name]
                                                                for z in readable}}
    for predictor in config.predictors:
      predictions[predictor] = _fit_features(config, predictor, targets, train_x, train.table, test_x, seed,
                                             os.path.join(ckpt, predictor))
  else:
    from zoo_jax.encoders import baselines, sne
    everything = [pool, *others]
    inputs = _Inputs(config, everything, train)
    reg, cls = targets.encode(train.table)
    if method == "sne":
      module = sne.SNE(num_outputs=targets.num_outputs, **config.sne.model.to_dict())
      kwargs = dict(invariance_weight=config.sne.invariance_weight, permuted=inputs.permuted(train))
    else:
      comparable = {n: z for n, z in test_sets.items() if z.spec == train.spec}
      skipped.update({n: "another architecture" for n in test_sets if n not in comparable})
      test_sets = comparable
      module = baselines.DeepSets(num_outputs=targets.num_outputs, **config.deepsets.model.to_dict())
      kwargs = {}
    t = config.train
    params, _ = properties.train_predictor(
        module, inputs(train), reg, cls, targets.num_classes, key=jax.random.key(seed),
        num_epochs=t.num_epochs, batch_size=t.batch_size, learning_rate=t.learning_rate,
        weight_decay=t.weight_decay, checkpoint_dir=os.path.join(ckpt, method),
        progress=config.progress_bar, desc=f"{method} seed {seed}", **kwargs)
    predict = properties.make_predict(module.apply)
    predictions["direct"] = {n: targets.decode(predict(params, inputs(z))) for n, z in test_sets.items()}
    if method == "sne":
      embed = jax.jit(lambda p, x: module.apply(p, x, method=sne.SNE.embed))
      embeddings = {z.name: training.map_batches(lambda x: embed(params, x), inputs(z)) for z in everything}

  rows, prediction_rows = [], []
  for predictor, by_set in predictions.items():
    for test_set, by_prop in by_set.items():
      table = test_sets[test_set].table
      frame = table[["zoo", "model_id", "epoch"]].copy()
      for prop, values in by_prop.items():
        truth = properties.Targets.raw(table, prop)
        for metric, value in properties.score(prop, truth, values).items():
          rows.append(dict(seed=seed, method=method, predictor=predictor, test_set=test_set, property=prop,
                           metric=metric, value=value))
        frame[f"{prop}_true"], frame[f"{prop}_pred"] = truth, values
      frame.insert(0, "test_set", test_set)
      frame.insert(0, "predictor", predictor)
      prediction_rows.append(frame)
  for test_set, why in skipped.items():
    rows.append(dict(seed=seed, method=method, predictor="-", test_set=test_set, property="-",
                     metric=f"n/a: {why}", value=np.nan))
  for prop in targets.skipped:
    rows.append(dict(seed=seed, method=method, predictor="-", test_set="-", property=prop,
                     metric="n/a: constant in the training split", value=np.nan))
  return pd.DataFrame(rows), pd.concat(prediction_rows, ignore_index=True), embeddings


# ---------------------------------------------------------------------------- the job


def summarize(per_seed: pd.DataFrame) -> pd.DataFrame:
  """Mean and spread (std over seeds) of every score."""
  scored = per_seed.dropna(subset=["value"])
  keys = ["method", "predictor", "test_set", "property", "metric"]
  table = scored.groupby(keys, sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
  return table.rename(columns={"count": "seeds"})


def plot_test_accuracy(predictions: pd.DataFrame, path: str, title: str) -> None:
  """Predicted vs true test accuracy, one panel per test set, one colour per predictor."""
  from matplotlib.figure import Figure  # not pyplot: leaves a notebook's backend alone
  if "test_acc_pred" not in predictions:
    return
  sets = list(dict.fromkeys(predictions["test_set"]))
  fig = Figure(figsize=(4.2 * len(sets), 4))
  axes = fig.subplots(1, len(sets), squeeze=False)
  for ax, test_set in zip(axes[0], sets):
    part = predictions[predictions["test_set"] == test_set]
    for predictor, rows in part.groupby("predictor", sort=False):
      ax.scatter(rows["test_acc_true"], rows["test_acc_pred"], s=6, alpha=0.5, label=predictor)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="true test accuracy", ylabel="predicted test accuracy", title=test_set, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def encode_and_evaluate(config: ml_collections.ConfigDict, zoo_dirs: Sequence[str], workdir: str) -> pd.DataFrame:
  """The whole job: every seed trained and scored (resuming finished seeds), tables and plot written."""
  validate_config(config, len(zoo_dirs))
  os.makedirs(workdir, exist_ok=True)
  with lock.workdir_lock(workdir):  # one writer per workdir
    return _encode_and_evaluate(config, zoo_dirs, workdir)


def _encode_and_evaluate(config: ml_collections.ConfigDict, zoo_dirs: Sequence[str], workdir: str) -> pd.DataFrame:
  record = {"config": json.loads(config.to_json()), "zoos": [os.path.abspath(d) for d in zoo_dirs]}
  record["config"].pop("progress_bar", None)
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if old != record:
      raise ValueError(f"Workdir {workdir!r} holds results of another config or other zoos; use another "
                       "--workdir.")
  else:
    zoo_lib.write_json_atomic(record, path)

  hygiene = config.get("filter", {})
  states = [load_states(d, config.get("epochs"), **dict(hygiene)) for d in zoo_dirs]
  for s in states:
    print(s.hygiene)
  names = [s.name for s in states]
  if len(set(names)) != len(names):
    raise ValueError(f"--zoo directories must have distinct names (got {names}); they label the test sets.")
  train_zoos = states[:config.split.train_zoos]
  pool = train_zoos[0] if len(train_zoos) == 1 else _pool(train_zoos)
  others = states[config.split.train_zoos:]

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
        np.savez(os.path.join(workdir, "embeddings.npz"), **{
            f"{name}/{key}": value for name, z in embeddings.items() for key, value in
            (("embedding", z), ("model_id", _by_name(states, pool, name).table["model_id"].to_numpy()),
             ("epoch", _by_name(states, pool, name).table["epoch"].to_numpy()))})
    per_seed = pd.concat([per_seed, scores], ignore_index=True)
    zoo_lib.write_table_atomic(per_seed, per_seed_path)  # a finished seed is never redone
  results = summarize(per_seed)
  zoo_lib.write_table_atomic(results, os.path.join(workdir, RESULTS_FILE))
  if os.path.exists(os.path.join(workdir, PREDICTIONS_FILE)):
    plot_test_accuracy(pd.read_csv(os.path.join(workdir, PREDICTIONS_FILE)),
                       os.path.join(workdir, "test_acc.png"), f"{config.method}: test accuracy from weights")
  return results


def _pool(zoos: Sequence[ZooStates]) -> ZooStates:
  if len({z.spec for z in zoos}) > 1:
    raise ValueError("config.split.train_zoos pools zoos of different architectures; only method 'sne' "
                     "reads mixed architectures, and it takes them as separate --zoo test sets.")
  return ZooStates("+".join(z.name for z in zoos), pd.concat([z.table for z in zoos], ignore_index=True),
                   np.concatenate([z.flat for z in zoos]), zoos[0].spec)


def _by_name(states, pool, name):
  return pool if name == pool.name else next(s for s in states if s.name == name)


def _format(results: pd.DataFrame) -> str:
  table = results.copy()
  table["score"] = [f"{m:.3f} ± {s:.3f}" if np.isfinite(s) else f"{m:.3f}" for m, s in
                    zip(table["mean"], table["std"].fillna(np.nan))]
  return table.pivot_table(index=["predictor", "property"], columns=["test_set", "metric"], values="score",
                           aggfunc="first").to_string()


if __name__ == "__main__":
  from absl import flags
  from ml_collections import config_flags

  from zoo_jax import cli

  _CONFIG = config_flags.DEFINE_config_file("config", None, "Encoder config file.", lock_config=True)
  _ZOOS = flags.DEFINE_multi_string("zoo", None, "Zoo workdir(s); the first split.train_zoos train.")
  _WORKDIR = flags.DEFINE_string("workdir", None, "Where results and checkpoints go.")
  flags.mark_flags_as_required(["config", "zoo", "workdir"])

  def main(argv):
    del argv
    results = encode_and_evaluate(_CONFIG.value, _ZOOS.value, _WORKDIR.value)
    print(_format(results))
    print(f"results: {os.path.join(_WORKDIR.value, RESULTS_FILE)}")

  cli.run(main)
