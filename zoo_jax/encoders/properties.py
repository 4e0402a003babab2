"""Property prediction: a zoo's model states as (inputs, targets), splits by model, probes, metrics.

A *state* is one model at one stored epoch. Targets follow the Model Zoos / hyper-
representation protocol: test accuracy, generalisation gap and epoch, the regressed
hyperparameters (log10 of learning rate and weight decay, dropout rate) and the
categorical ones (activation, init, optimizer). Splits are by model, never by state, so
no model has epochs on both sides. Neural predictors are trained on all properties at
once (one multi-task head: standardised regression outputs, then one logit block per
categorical property); probes fit one property at a time.
"""

import os
from typing import Any, Callable, NamedTuple, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import scipy.special
import scipy.stats

from zoo_jax import zoo as zoo_lib
from zoo_jax.encoders import training


class Property(NamedTuple):
  kind: str  # "regression" | "classification"
  column: str  # column of the state table it is read from
  log10: bool = False  # regress log10(value) (learning rates, weight decays)


PROPERTIES = {
  "test_acc": Property("regression", "test_acc"),
  "gen_gap": Property("regression", "gen_gap"),
  "epoch": Property("regression", "epoch"),
  "learning_rate": Property("regression", "learning_rate", log10=True),
  "weight_decay": Property("regression", "weight_decay", log10=True),
  "dropout": Property("regression", "dropout"),
  "activation": Property("classification", "activation"),
  "init": Property("classification", "init"),
  "optimizer": Property("classification", "optimizer"),
}
REGRESSION_METRICS = ("r2", "kendall_tau")
CLASSIFICATION_METRICS = ("accuracy",)


def check_properties(names: Sequence[str], field: str = "properties") -> None:
  unknown = [n for n in names if n not in PROPERTIES]
  if unknown or not names:
    raise ValueError(
      f"config.{field} {list(names)!r}: unknown or empty; allowed values: {list(PROPERTIES)}."
    )


# ---------------------------------------------------------------------------- states and splits


def state_table(zoo: zoo_lib.Zoo, epochs: Sequence[int] | None = None) -> pd.DataFrame:
  """One row per usable (model, epoch) state: ids, hyperparameters and metrics.

  Diverged and missing states are left out (their weights are not a trained network).
  `epochs` None keeps every stored epoch; a negative one counts back from the newest (-1: the
  final checkpoints).
  """
  stored = zoo.epochs
  if epochs is not None:
    resolved = [stored[e] if -len(stored) <= e < 0 else e for e in epochs]
    epochs = sorted({e for e in resolved if e in stored})
  else:
    epochs = stored
  if not epochs:
    raise ValueError(f"No stored epoch of {zoo.workdir} is selected (stored: {zoo.epochs}).")
  metrics = zoo.metrics[
    zoo.metrics["epoch"].isin(epochs) & (zoo.metrics["status"] == zoo_lib.STATUS_OK)
  ]
  table = metrics.merge(zoo.models, on="model_id", how="left", validate="many_to_one")
  table.insert(0, "zoo", os.path.basename(os.path.normpath(zoo.workdir)))
  return table.sort_values(["epoch", "model_id"], kind="stable").reset_index(drop=True)


SPLIT_PROTOCOLS = ("by_model", "small_cnn_zoo")


def split_by_model(table: pd.DataFrame, test_fraction: float, seed: int) -> np.ndarray:
  """Boolean [N]: True for test states. Whole models go to one side (keyed by zoo and model_id)."""
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"config.split.test_fraction must be in (0, 1), got {test_fraction!r}.")
  keys = table["zoo"].astype(str) + "/" + table["model_id"].astype(str)
  models = np.unique(keys.to_numpy())
  if len(models) < 2:
    raise ValueError(
      f"Splitting by model needs at least 2 models, the selection has {len(models)}."
    )
  shuffled = np.random.default_rng(seed).permutation(models)
  num_test = min(max(1, round(test_fraction * len(models))), len(models) - 1)
  return keys.isin(set(shuffled[:num_test])).to_numpy()


# ---------------------------------------------------------------------------- targets


# How a neural predictor sees the regression targets (Objective.scaling) and what it minimises
# (Objective.loss); categorical properties always take a softmax cross-entropy.
SCALINGS = ("standard", "unit", "rank")
LOSSES = ("mse", "bce")


class Objective(NamedTuple):
  """The training objective of a neural predictor (an MLP probe or an end-to-end encoder).

  scaling      "standard": z-scores of the training values; "unit": min-max to [0, 1] over the
               training values (raw accuracy, as the NFN papers train); "rank": each value's
               empirical CDF among the training values, so that the many chance-level models and
               the few that learned weigh alike.
  loss         "mse" on the scaled targets, or "bce": a sigmoid output and binary cross-entropy
               against the targets in [0, 1] (scaling "unit" or "rank").
  rank_weight  weight of a pairwise logistic ranking loss added per regression property (every
               ordered pair of the batch whose targets differ: softplus of the wrong-way margin).
  """

  scaling: str = "standard"
  loss: str = "mse"
  rank_weight: float = 0.0

  @classmethod
  def from_config(cls, section, field: str) -> "Objective":
    """Reads `targets`, `loss` and `rank_weight` of a config section (`field` names it in errors)."""
    objective = cls(
      scaling=section.get("targets", "standard"),
      loss=section.get("loss", "mse"),
      rank_weight=float(section.get("rank_weight", 0.0)),
    )
    objective.check(field)
    return objective

  def check(self, field: str = "train") -> None:
    if self.scaling not in SCALINGS:
      raise ValueError(
        f"config.{field}.targets is {self.scaling!r}; allowed values: {list(SCALINGS)}."
      )
    if self.loss not in LOSSES:
      raise ValueError(f"config.{field}.loss is {self.loss!r}; allowed values: {list(LOSSES)}.")
    if self.loss == "bce" and self.scaling == "standard":
      raise ValueError(
        f"config.{field}.loss='bce' needs targets in [0, 1]; set config.{field}.targets to "
        "'unit' or 'rank'."
      )
    if not self.rank_weight >= 0:
      raise ValueError(f"config.{field}.rank_weight must be >= 0, got {self.rank_weight!r}.")


class Targets:
  """Encodes the properties of states for a multi-task head, fitted on the training states.

  Properties constant on the training states are dropped (nothing to predict); their
  names are in `skipped`. `objective` says how regression targets are scaled and how outputs
  decode (a sigmoid first under the BCE loss).
  """

  def __init__(self, table: pd.DataFrame, names: Sequence[str], objective: Objective = Objective()):
    check_properties(names)
    objective.check()
    self.objective = objective
    self.regression, self.classification, self.skipped = [], [], []
    self.mean, self.std, self.classes = {}, {}, {}
    self.sorted = {}  # regression property -> (sorted unique training values, their scaled values)
    for name in names:
      values = self.raw(table, name)
      if len(np.unique(values)) < 2:
        self.skipped.append(name)
      elif PROPERTIES[name].kind == "regression":
        self.regression.append(name)
        self.mean[name], self.std[name] = float(np.mean(values)), float(np.std(values))
        unique, inverse = np.unique(values, return_inverse=True)
        if objective.scaling == "rank":  # mid-ranks of the unique values, as an empirical CDF
          cdf = np.empty(len(unique))
          cdf[inverse] = scipy.stats.rankdata(values, method="average") / len(values)  # ties: equal
          self.sorted[name] = (unique, cdf)
        else:
          self.sorted[name] = (unique, (unique - unique[0]) / (unique[-1] - unique[0]))
      else:
        self.classification.append(name)
        self.classes[name] = np.unique(values)
    self.names = self.regression + self.classification

  @staticmethod
  def raw(table: pd.DataFrame, name: str) -> np.ndarray:
    """The property's values as the predictors see them (log10 where the protocol says so)."""
    prop = PROPERTIES[name]
    values = table[prop.column].to_numpy()
    if prop.log10:
      values = values.astype(np.float64)
      if np.any(values <= 0):
        return values  # e.g. weight decay 0 in a seed zoo: constant there, so skipped anyway
      return np.log10(values)
    return values.astype(np.float64) if prop.kind == "regression" else values.astype(str)

  @property
  def num_outputs(self) -> int:
    return len(self.regression) + sum(len(self.classes[n]) for n in self.classification)

  @property
  def num_classes(self) -> tuple[int, ...]:
    return tuple(len(self.classes[n]) for n in self.classification)

  def _scale(self, name: str, values: np.ndarray) -> np.ndarray:
    scaling = self.objective.scaling
    if scaling == "standard":
      return (values - self.mean[name]) / max(self.std[name], 1e-12)
    unique, scaled = self.sorted[name]
    if scaling == "unit":  # linear, also beyond the training range
      return (values - unique[0]) / (unique[-1] - unique[0])
    return np.interp(values, unique, scaled)  # rank: the training CDF, clipped at its ends

  def _unscale(self, name: str, values: np.ndarray) -> np.ndarray:
    scaling = self.objective.scaling
    if scaling == "standard":
      return values * self.std[name] + self.mean[name]
    unique, scaled = self.sorted[name]
    if scaling == "unit":
      return values * (unique[-1] - unique[0]) + unique[0]
    return np.interp(values, scaled, unique)  # monotone: the ranking survives decoding

  def encode(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(regression [N, R] scaled float32, classes [N, K] int32; -1 for an unseen class)."""
    reg = np.zeros((len(table), len(self.regression)), np.float32)
    for j, n in enumerate(self.regression):
      reg[:, j] = self._scale(n, self.raw(table, n))
    cls = np.zeros((len(table), len(self.classification)), np.int32)
    for j, n in enumerate(self.classification):
      lookup = {c: i for i, c in enumerate(self.classes[n])}
      cls[:, j] = [lookup.get(v, -1) for v in self.raw(table, n)]
    return reg, cls

  def decode(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
    """Multi-task outputs [N, num_outputs] -> {property: predictions in the property's units}."""
    outputs = np.asarray(outputs, np.float64)
    regression = outputs[:, : len(self.regression)]
    if self.objective.loss == "bce":
      regression = scipy.special.expit(regression)
    predictions = {n: self._unscale(n, regression[:, j]) for j, n in enumerate(self.regression)}
    start = len(self.regression)
    for n, k in zip(self.classification, self.num_classes):
      predictions[n] = self.classes[n][np.argmax(outputs[:, start : start + k], axis=1)]
      start += k
    return predictions

  def loss(self, outputs: jax.Array, reg: jax.Array, cls: jax.Array) -> jax.Array:
    """The objective's multi-task loss on a batch (`multitask_loss`)."""
    return multitask_loss(
      outputs,
      reg,
      cls,
      self.num_classes,
      loss=self.objective.loss,
      rank_weight=self.objective.rank_weight,
    )


def multitask_loss(
  outputs: jax.Array,
  reg: jax.Array,
  cls: jax.Array,
  num_classes: tuple[int, ...],
  *,
  loss: str = "mse",
  rank_weight: float = 0.0,
) -> jax.Array:
  """The regression loss ("mse", or "bce" on sigmoid outputs), plus `rank_weight` x the pairwise
  ranking loss, on the regression outputs; + cross-entropy per categorical property."""
  num_reg = reg.shape[-1]
  chex.assert_shape(outputs, (reg.shape[0], num_reg + sum(num_classes)))
  total = 0.0
  if num_reg:
    scores = outputs[:, :num_reg]
    if loss == "bce":
      total = jnp.mean(optax.sigmoid_binary_cross_entropy(scores, reg))
    else:
      total = jnp.mean((scores - reg) ** 2)
    if rank_weight > 0:
      total = total + rank_weight * ranking_loss(scores, reg)
  start = num_reg
  for j, k in enumerate(num_classes):
    labels = cls[:, j]
    ce = optax.softmax_cross_entropy_with_integer_labels(
      outputs[:, start : start + k], jnp.maximum(labels, 0)
    )
    total = total + jnp.sum(jnp.where(labels >= 0, ce, 0.0)) / jnp.maximum(jnp.sum(labels >= 0), 1)
    start += k
  return total


def ranking_loss(scores: jax.Array, targets: jax.Array) -> jax.Array:
  """Pairwise logistic ranking loss, averaged over properties: a scalar.

  scores, targets [B, R]. For every pair (a, b) of the batch with targets[a] > targets[b], the
  loss is softplus(scores[b] - scores[a]) (RankNet); the mean over those pairs per column. Zero
  gradient from pairs of equal targets; only the order of the scores matters, not their scale.
  """
  chex.assert_equal_shape([scores, targets])
  above = targets[:, None, :] > targets[None, :, :]  # [B, B, R]: a above b
  margin = scores[:, None, :] - scores[None, :, :]
  pairs = jnp.sum(above, axis=(0, 1))
  per_column = jnp.sum(jnp.where(above, jax.nn.softplus(-margin), 0.0), axis=(0, 1))
  return jnp.mean(per_column / jnp.maximum(pairs, 1))


# ---------------------------------------------------------------------------- metrics


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
  """Coefficient of determination, 1 - SS_res / SS_tot (sklearn's r2_score)."""
  y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
  ss_tot = np.sum((y_true - y_true.mean()) ** 2)
  return float(1.0 - np.sum((y_true - y_pred) ** 2) / ss_tot) if ss_tot > 0 else float("nan")


def kendall_tau(y_true: np.ndarray, y_pred: np.ndarray) -> float:
  """Kendall's tau-b (ties handled), the rank agreement the weight-space papers report."""
  return float(scipy.stats.kendalltau(y_true, y_pred).statistic)


def score(name: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
  """{metric: value} for one property: R^2 and Kendall tau, or accuracy."""
  if len(y_true) != len(y_pred):
    raise ValueError(f"{name}: {len(y_true)} targets but {len(y_pred)} predictions.")
  if PROPERTIES[name].kind == "regression":
    return {"r2": r2(y_true, y_pred), "kendall_tau": kendall_tau(y_true, y_pred)}
  return {
    "accuracy": float(np.mean(np.asarray(y_true).astype(str) == np.asarray(y_pred).astype(str)))
  }


# ---------------------------------------------------------------------------- probes


def ridge_probe(
  x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alpha: float = 0.3
) -> np.ndarray:
  """Closed-form ridge regression with an unpenalised bias on standardised features.

  y_train [N] or [N, K] (one-hot for a linear classifier); returns predictions for x_test.
  Solves in the dual when features outnumber examples (flat weights).
  """
  mean, std = x_train.mean(0), x_train.std(0) + 1e-8
  a, b = (x_train - mean) / std, (x_test - mean) / std
  y_mean = y_train.mean(0)
  y = y_train - y_mean
  if a.shape[1] <= a.shape[0]:
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ y)
  else:
    w = a.T @ np.linalg.solve(a @ a.T + alpha * np.eye(a.shape[0]), y)
  return b @ w + y_mean


def fit_probe(
  kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int = 0
) -> np.ndarray:
  """Per-property probes on fixed features: "ridge" (closed form; one-hot for categories) or
  "gbt" (sklearn's histogram gradient-boosted trees, the StatNN predictor)."""
  categorical = y_train.dtype.kind in "OUS"
  if kind == "ridge":
    if not categorical:
      return ridge_probe(x_train, y_train, x_test)
    classes = np.unique(y_train)
    onehot = (y_train[:, None] == classes[None, :]).astype(np.float64)
    return classes[np.argmax(ridge_probe(x_train, onehot, x_test), axis=1)]
  if kind == "gbt":
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    model = (HistGradientBoostingClassifier if categorical else HistGradientBoostingRegressor)(
      random_state=seed
    )
    return model.fit(x_train, y_train).predict(x_test)
  raise ValueError(f"Unknown probe {kind!r}; allowed values: ['ridge', 'gbt'].")


# ---------------------------------------------------------------------------- neural predictors


class MLP(nn.Module):
  """A small MLP head: the probe on frozen embeddings and the flat-weight baseline."""

  hidden: Sequence[int]
  num_outputs: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for width in self.hidden:
      x = nn.gelu(nn.Dense(width)(x))
    return nn.Dense(self.num_outputs)(x)


def make_supervised_step(
  apply_fn: Callable[..., jax.Array],
  tx: optax.GradientTransformation,
  loss: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
  invariance_weight: float = 0.0,
):
  """Jitted multi-task step on batches (inputs, reg, cls[, permuted inputs]).

  `loss(outputs, reg, cls)` is the task loss (`Targets.loss`). With `invariance_weight` > 0 the
  batch carries a hidden-unit-permuted copy of each model, and the squared difference of the two
  predictions is penalised (SNE's logit invariance: the same network must get the same prediction).
  """

  @jax.jit
  def step(params, opt_state, batch, key):
    inputs, reg, cls = batch[:3]

    def loss_fn(p):
      outputs = apply_fn(p, inputs, train=True, rngs={"dropout": key})
      task = loss(outputs, reg, cls)
      if invariance_weight > 0:
        permuted = apply_fn(p, batch[3], train=True, rngs={"dropout": key})
        invariance = jnp.mean((outputs - permuted) ** 2)
        return task + invariance_weight * invariance, {"task": task, "invariance": invariance}
      return task, {"task": task}

    (total, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": total, **aux}

  return step


def make_predict(apply_fn: Callable[..., jax.Array], batch_size: int = 256):
  """`predict(params, inputs [N, ...]) -> outputs [N, K]` in fixed-size jitted batches (any N)."""
  jitted = jax.jit(lambda p, x: apply_fn(p, x, train=False))
  return lambda params, inputs: training.map_batches(
    lambda x: jitted(params, x), inputs, batch_size
  )


def validation_score(targets: Targets, table: pd.DataFrame, outputs: np.ndarray, on: str) -> float:
  """How well outputs rank states: Kendall tau of property `on` (mean over the regression
  properties when `on` is not one of them), from decoded predictions against the table."""
  predicted = targets.decode(outputs)
  names = [on] if on in targets.regression else targets.regression
  taus = [kendall_tau(Targets.raw(table, n), predicted[n]) for n in names]
  return float(np.nanmean(taus)) if taus and not np.all(np.isnan(taus)) else 0.0


def train_predictor(
  module: nn.Module,
  inputs: Any,
  table: pd.DataFrame,
  targets: Targets,
  *,
  key: jax.Array,
  num_epochs: int,
  batch_size: int,
  learning_rate: float,
  weight_decay: float = 0.0,
  invariance_weight: float = 0.0,
  permuted: Callable[[jax.Array], Any] | None = None,
  buckets: np.ndarray | None = None,
  trim: Callable[[Any], Any] | None = None,
  validation_fraction: float = 0.0,
  select_on: str = "test_acc",
  seed: int = 0,
  checkpoint_dir: str | None = None,
  progress: bool = True,
  desc: str = "predictor",
) -> tuple[Any, list[dict]]:
  """Trains `module` (inputs -> multi-task outputs) on the states of `table` with AdamW under
  `targets`' objective; returns (params, history).

  `inputs` holds one row per row of `table`. `permuted(key) -> inputs` rebuilds permuted copies of
  all inputs each epoch (logit invariance). `buckets` (one id per row) and `trim` batch rows of one
  bucket together and cut each batch before its step (`training.fit`). With `validation_fraction`
  > 0 that share of the models (all their states; split seeded by `seed`) is held out of training,
  each epoch is scored on it (`validation_score` of `select_on`) and the best epoch's params are
  returned, as the NFN papers keep the checkpoint of best validation tau.
  """
  reg, cls = targets.encode(table)
  select, train_rows = None, np.ones(len(table), bool)
  if validation_fraction > 0:
    is_val = split_by_model(table, validation_fraction, seed + _VALIDATION_SEED)
    train_rows = ~is_val
    val_inputs = jax.tree.map(lambda x: x[is_val], inputs)
    val_table = table[is_val]
    predict = make_predict(module.apply)
    select = lambda p: validation_score(targets, val_table, predict(p, val_inputs), select_on)
  subset = lambda tree: jax.tree.map(lambda x: x[train_rows], tree)
  inputs, reg, cls = subset(inputs), reg[train_rows], cls[train_rows]
  buckets = None if buckets is None else np.asarray(buckets)[train_rows]
  init_key, fit_key = jax.random.split(key)
  example = jax.tree.map(lambda x: x[:1], inputs)
  params = module.init({"params": init_key, "dropout": init_key}, example)
  tx = optax.adamw(learning_rate, weight_decay=weight_decay)
  step = make_supervised_step(module.apply, tx, targets.loss, invariance_weight)
  data = (inputs, reg, cls)
  epoch_data = None
  if invariance_weight > 0:
    if permuted is None:
      raise ValueError("invariance_weight > 0 needs `permuted`, the permuted copies of the inputs.")
    epoch_data = lambda k: (inputs, reg, cls, subset(permuted(k)))
  params, _, history = training.fit(
    step,
    params,
    tx.init(params),
    data,
    key=fit_key,
    num_epochs=num_epochs,
    batch_size=batch_size,
    epoch_data=epoch_data,
    select=select,
    buckets=buckets,
    trim=trim,
    checkpoint_dir=checkpoint_dir,
    progress=progress,
    desc=desc,
  )
  return params, history


_VALIDATION_SEED = 7919  # offsets the validation split's seed from the test split's
