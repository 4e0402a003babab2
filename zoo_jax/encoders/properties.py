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
  `epochs` None keeps every stored epoch.
  """
  epochs = zoo.epochs if epochs is None else [e for e in epochs if e in zoo.epochs]
  if not epochs:
    raise ValueError(f"No stored epoch of {zoo.workdir} is selected (stored: {zoo.epochs}).")
  metrics = zoo.metrics[
    zoo.metrics["epoch"].isin(epochs) & (zoo.metrics["status"] == zoo_lib.STATUS_OK)
  ]
  table = metrics.merge(zoo.models, on="model_id", how="left", validate="many_to_one")
  table.insert(0, "zoo", os.path.basename(os.path.normpath(zoo.workdir)))
  return table.sort_values(["epoch", "model_id"], kind="stable").reset_index(drop=True)


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


class Targets:
  """Encodes the properties of states for a multi-task head, fitted on the training states.

  Properties constant on the training states are dropped (nothing to predict); their
  names are in `skipped`.
  """

  def __init__(self, table: pd.DataFrame, names: Sequence[str]):
    check_properties(names)
    self.regression, self.classification, self.skipped = [], [], []
    self.mean, self.std, self.classes = {}, {}, {}
    for name in names:
      values = self.raw(table, name)
      if len(np.unique(values)) < 2:
        self.skipped.append(name)
      elif PROPERTIES[name].kind == "regression":
        self.regression.append(name)
        self.mean[name], self.std[name] = float(np.mean(values)), float(np.std(values))
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

  def encode(self, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(regression [N, R] standardised float32, classes [N, K] int32; -1 for an unseen class)."""
    reg = np.zeros((len(table), len(self.regression)), np.float32)
    for j, n in enumerate(self.regression):
      reg[:, j] = (self.raw(table, n) - self.mean[n]) / max(self.std[n], 1e-12)
    cls = np.zeros((len(table), len(self.classification)), np.int32)
    for j, n in enumerate(self.classification):
      lookup = {c: i for i, c in enumerate(self.classes[n])}
      cls[:, j] = [lookup.get(v, -1) for v in self.raw(table, n)]
    return reg, cls

  def decode(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
    """Multi-task outputs [N, num_outputs] -> {property: predictions in the property's units}."""
    outputs = np.asarray(outputs)
    predictions = {
      n: outputs[:, j] * self.std[n] + self.mean[n] for j, n in enumerate(self.regression)
    }
    start = len(self.regression)
    for n, k in zip(self.classification, self.num_classes):
      predictions[n] = self.classes[n][np.argmax(outputs[:, start : start + k], axis=1)]
      start += k
    return predictions


def multitask_loss(
  outputs: jax.Array, reg: jax.Array, cls: jax.Array, num_classes: tuple[int, ...]
) -> jax.Array:
  """Mean squared error on the standardised regression outputs + cross-entropy per categorical property."""
  num_reg = reg.shape[-1]
  chex.assert_shape(outputs, (reg.shape[0], num_reg + sum(num_classes)))
  loss = jnp.mean((outputs[:, :num_reg] - reg) ** 2) if num_reg else 0.0
  start = num_reg
  for j, k in enumerate(num_classes):
    labels = cls[:, j]
    ce = optax.softmax_cross_entropy_with_integer_labels(
      outputs[:, start : start + k], jnp.maximum(labels, 0)
    )
    loss = loss + jnp.sum(jnp.where(labels >= 0, ce, 0.0)) / jnp.maximum(jnp.sum(labels >= 0), 1)
    start += k
  return loss


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
  num_classes: tuple[int, ...],
  invariance_weight: float = 0.0,
):
  """Jitted multi-task step on batches (inputs, reg, cls[, permuted inputs]).

  With `invariance_weight` > 0 the batch carries a hidden-unit-permuted copy of each
  model, and the squared difference of the two predictions is penalised (SNE's logit
  invariance: the same network must get the same prediction).
  """

  @jax.jit
  def step(params, opt_state, batch, key):
    inputs, reg, cls = batch[:3]

    def loss_fn(p):
      outputs = apply_fn(p, inputs, train=True, rngs={"dropout": key})
      task = multitask_loss(outputs, reg, cls, num_classes)
      if invariance_weight > 0:
        permuted = apply_fn(p, batch[3], train=True, rngs={"dropout": key})
        invariance = jnp.mean((outputs - permuted) ** 2)
        return task + invariance_weight * invariance, {"task": task, "invariance": invariance}
      return task, {"task": task}

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": loss, **aux}

  return step


def make_predict(apply_fn: Callable[..., jax.Array], batch_size: int = 256):
  """`predict(params, inputs [N, ...]) -> outputs [N, K]` in fixed-size jitted batches (any N)."""
  jitted = jax.jit(lambda p, x: apply_fn(p, x, train=False))
  return lambda params, inputs: training.map_batches(
    lambda x: jitted(params, x), inputs, batch_size
  )


def train_predictor(
  module: nn.Module,
  inputs: Any,
  reg: np.ndarray,
  cls: np.ndarray,
  num_classes: tuple[int, ...],
  *,
  key: jax.Array,
  num_epochs: int,
  batch_size: int,
  learning_rate: float,
  weight_decay: float = 0.0,
  invariance_weight: float = 0.0,
  permuted: Callable[[jax.Array], Any] | None = None,
  checkpoint_dir: str | None = None,
  progress: bool = True,
  desc: str = "predictor",
) -> tuple[Any, list[dict]]:
  """Trains `module` (inputs -> multi-task outputs) with AdamW; returns (params, history).

  `permuted(key) -> inputs` rebuilds permuted copies of all inputs each epoch (logit invariance).
  """
  init_key, fit_key = jax.random.split(key)
  example = jax.tree.map(lambda x: x[:1], inputs)
  params = module.init({"params": init_key, "dropout": init_key}, example)
  tx = optax.adamw(learning_rate, weight_decay=weight_decay)
  step = make_supervised_step(module.apply, tx, num_classes, invariance_weight)
  data = (inputs, reg, cls)
  epoch_data = None
  if invariance_weight > 0:
    if permuted is None:
      raise ValueError("invariance_weight > 0 needs `permuted`, the permuted copies of the inputs.")
    epoch_data = lambda k: (inputs, reg, cls, permuted(k))
  params, _, history = training.fit(
    step,
    params,
    tx.init(params),
    data,
    key=fit_key,
    num_epochs=num_epochs,
    batch_size=batch_size,
    epoch_data=epoch_data,
    checkpoint_dir=checkpoint_dir,
    progress=progress,
    desc=desc,
  )
  return params, history
