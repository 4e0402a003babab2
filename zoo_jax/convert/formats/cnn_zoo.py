"""Reads the Small CNN Zoo (Unterthiner et al., 2020) as published: one weights matrix per dataset.

Accepted layout (the files in e.g. `mnist.tar.xz` of the dataset; anything else is an error
that names the file):

    SRC/weights.npy                 float [N, n_params], one row per checkpoint (numpy .npy)
    SRC/metrics.csv.gz | metrics.csv   N rows, row i describes weights row i (exactly one of the two)
    SRC/layout.csv                  one row per variable: varname, start_idx, end_idx, shape

layout.csv: `varname` is the Keras variable name ending in "/kernel:0" or "/bias:0" (e.g.
"sequential/conv2d/kernel:0"); `start_idx`/`end_idx` the column range of the variable in
weights.npy; `shape` its TF shape, e.g. "(3, 3, 1, 16)" (conv kernels HWIO, dense (in, out):
zoo_jax's layouts, so weights are only reshaped, row-major as numpy/TF flatten). The ranges
must tile [0, n_params) exactly. Layers are ordered by where their first variable starts and
must be conv, conv, conv, dense (the `cnn_zoo` architecture; input channels from the first
kernel). The published order puts each layer's bias before its kernel; any order is accepted.

metrics columns read (others ignored):
    modeldir        the training run; rows with the same modeldir are epochs of one model.
                    Without this column every row is a model of its own.
    step            the epoch of the checkpoint (published values 0, 1, 2, 3, 20, 40, 60, 80,
                    86, which are epochs, as train_network.py evaluates once per epoch); else
                    an `epoch` column; else every row is epoch 0.
    train_loss, train_accuracy, test_loss, test_accuracy -> train_loss, train_acc, test_loss,
                    test_acc (the zoo has no validation split: validation_* are NaN). A NaN or
                    infinite loss marks the checkpoint diverged.
    config.activation (required: relu, tanh, sigmoid, gelu), config.dropout, config.w_init,
                    config.optimizer, config.learning_rate, config.l2reg, config.random_seed
                    -> activation, dropout, init, optimizer, learning_rate, weight_decay, seed.
                    Every other config.* column (config.train_fraction, config.init_std,
                    config.b_init, ...) is kept in models.csv under its own name. A model's
                    rows must agree on all config.* values.

models.csv also records how the zoo was trained: `weight_decay_semantics` ("keras_l2_kernels":
weight_decay is l2reg, a loss term l2reg * sum(W^2) over kernels only) and `preprocess`, the
zoo_jax.data protocol override that re-evaluates the models on their data (images scaled to
[-1, 1], RGB to gray as the mean of the channels, full 32x32 for CIFAR-10 / SVHN; 28x28 MNIST).

Models are numbered in modeldir order (or row order without modeldir); `source` is the
modeldir (or "row_<i>"). A model without a row at one of the zoo's epochs (a crashed run)
keeps NaN weights there with status "missing".
"""

import json
import os
import re
import zlib
from typing import Any

import numpy as np
import pandas as pd

from zoo_jax.convert import writer

ARCH = "cnn_zoo"
WEIGHTS_FILE, LAYOUT_FILE, METRICS_FILES = (
  "weights.npy",
  "layout.csv",
  ("metrics.csv.gz", "metrics.csv"),
)
# Keras activation names with the same function in zoo_jax.models.ACTIVATIONS. (Keras'
# leaky_relu slope differs between versions, so it is not mapped.)
ACTIVATION_NAMES = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "gelu": "gelu"}
_HPARAM_COLUMNS = {
  "seed": "config.random_seed",
  "activation": "config.activation",
  "dropout": "config.dropout",
  "init": "config.w_init",
  "optimizer": "config.optimizer",
  "learning_rate": "config.learning_rate",
  "weight_decay": "config.l2reg",
}
_METRIC_COLUMNS = {
  "train_loss": "train_loss",
  "train_acc": "train_accuracy",
  "test_loss": "test_loss",
  "test_acc": "test_accuracy",
}
_LAYER_NAMES = ("conv_0", "conv_1", "conv_2", "dense_0")
_VARNAME = re.compile(r"^(?P<layer>.*)/(?P<kind>kernel|bias)(:\d+)?$")


def scan(src: str) -> writer.Source:
  """Scans a published Small CNN Zoo folder: layout, metrics, and the weights matrix (memory-mapped)."""
  if not os.path.isdir(src):
    raise FileNotFoundError(
      f"{src!r} is not a folder; expected {WEIGHTS_FILE}, {LAYOUT_FILE} and "
      f"{' or '.join(METRICS_FILES)} in it."
    )
  weights = _load_weights(os.path.join(src, WEIGHTS_FILE))
  layout_path = os.path.join(src, LAYOUT_FILE)
  layers = _read_layout(layout_path, weights.shape[1])
  metrics_path = _metrics_path(src)
  table = _read_table(metrics_path)
  if len(table) != weights.shape[0]:
    raise ValueError(
      f"{metrics_path} has {len(table)} rows but {os.path.join(src, WEIGHTS_FILE)} has "
      f"{weights.shape[0]}; expected one metrics row per weights row (a file may be truncated)."
    )
  channels = layers["conv_0"]["kernel"][2][2]
  shapes = writer.variable_shapes(ARCH, channels)
  declared = {
    name: {kind: np.empty(shape, np.float32) for kind, (_, _, shape) in layer.items()}
    for name, layer in layers.items()
  }
  writer.check_shapes(declared, shapes["params"], layout_path)

  model, epoch, sources = _identify(table, metrics_path)
  models = _models_table(table, model, sources, metrics_path)
  structure = [
    (ARCH, channels, row.activation, row.optimizer, bool(row.dropout > 0))
    for row in models.itertuples()
  ]
  metrics = pd.DataFrame({"model": model, "epoch": epoch})
  for ours, theirs in _METRIC_COLUMNS.items():
    metrics[ours] = pd.to_numeric(table[theirs], errors="coerce") if theirs in table else np.nan
  for name in ("validation_loss", "validation_acc"):
    metrics[name] = np.nan
  reported_losses = [ours for ours in ("train_loss", "test_loss") if _METRIC_COLUMNS[ours] in table]
  metrics["loss_diverged"] = ~np.isfinite(metrics[reported_losses].to_numpy(np.float64)).all(axis=1)
  rows_at = {e: dict(zip(model[epoch == e], np.flatnonzero(epoch == e))) for e in np.unique(epoch)}

  def read_epoch(e: int) -> list[Any]:
    at = rows_at.get(e, {})
    return [
      None if m not in at else {"params": _row_params(weights, at[m], layers)}
      for m in range(len(models))
    ]

  return writer.Source(
    models=models,
    structure=structure,
    shapes={key: shapes for key in structure},
    epochs=sorted(int(e) for e in rows_at),
    metrics=metrics,
    read_epoch=read_epoch,
  )


def _load_weights(path: str) -> np.ndarray:
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} is missing; expected the Small CNN Zoo weights matrix [N, n_params]."
    )
  try:
    weights = np.load(path, mmap_mode="r")
  except (OSError, ValueError, EOFError) as error:
    raise ValueError(
      f"{path}: cannot be read as a .npy matrix ({error}); the file may be truncated."
    ) from error
  if weights.ndim != 2 or not np.issubdtype(weights.dtype, np.floating):
    raise ValueError(
      f"{path}: expected a float matrix [N, n_params], got {weights.dtype} {weights.shape}."
    )
  return weights


def _metrics_path(src: str) -> str:
  found = [
    os.path.join(src, name) for name in METRICS_FILES if os.path.exists(os.path.join(src, name))
  ]
  if len(found) != 1:
    raise ValueError(
      f"{src!r} must hold exactly one of {list(METRICS_FILES)}; found {found or 'none'}."
    )
  return found[0]


def _read_table(path: str) -> pd.DataFrame:
  try:
    return pd.read_csv(path)
  except (OSError, EOFError, ValueError, zlib.error) as error:
    raise ValueError(
      f"{path}: cannot be read as a CSV table ({type(error).__name__}: {error}); "
      "the file may be truncated."
    ) from error


def _read_layout(path: str, num_params: int) -> dict[str, dict[str, tuple[int, int, tuple]]]:
  """{our layer: {"kernel"|"bias": (start, end, shape)}} from layout.csv, validated."""
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} is missing; expected the layout of the weights matrix's columns."
    )
  layout = _read_table(path)
  needed = {"varname", "start_idx", "end_idx", "shape"}
  if not needed <= set(layout.columns):
    raise ValueError(
      f"{path}: columns {sorted(needed - set(layout.columns))} are missing; expected "
      f"{sorted(needed)}."
    )
  variables, layer_order = {}, []
  for row in layout.sort_values("start_idx", kind="stable").itertuples():
    match = _VARNAME.match(str(row.varname))
    if match is None:
      raise ValueError(f"{path}: varname {row.varname!r} does not end in '/kernel:0' or '/bias:0'.")
    shape = tuple(int(d) for d in re.findall(r"\d+", str(row.shape)))
    start, end = int(row.start_idx), int(row.end_idx)
    if end - start != int(np.prod(shape)):
      raise ValueError(
        f"{path}: {row.varname} spans columns {start}:{end} ({end - start}) but its shape "
        f"{shape} has {int(np.prod(shape))} values."
      )
    if match["layer"] not in layer_order:
      layer_order.append(match["layer"])
    variables.setdefault(match["layer"], {})[match["kind"]] = (start, end, shape)
  spans = sorted((s, e) for layer in variables.values() for s, e, _ in layer.values())
  if [s for s, _ in spans] != [0] + [e for _, e in spans[:-1]] or spans[-1][1] != num_params:
    raise ValueError(
      f"{path}: the variables' column ranges {spans} do not tile the {num_params} columns "
      "of weights.npy exactly."
    )
  if len(layer_order) != len(_LAYER_NAMES) or any(
    set(v) != {"kernel", "bias"} for v in variables.values()
  ):
    raise ValueError(
      f"{path}: expected {len(_LAYER_NAMES)} layers (3 conv, 1 dense) with a kernel and a bias "
      f"each; got {[(layer, sorted(variables[layer])) for layer in layer_order]}."
    )
  return {ours: variables[theirs] for ours, theirs in zip(_LAYER_NAMES, layer_order)}


def _identify(table: pd.DataFrame, path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """(model of each row, epoch of each row, source name of each model)."""
  if "modeldir" in table:
    codes, names = pd.factorize(table["modeldir"].astype(str), sort=True)
    sources = list(names)
  else:
    codes, sources = np.arange(len(table)), [f"row_{i}" for i in range(len(table))]
  column = "step" if "step" in table else "epoch" if "epoch" in table else None
  if column is None:
    epoch = np.zeros(len(table), np.int64)
  else:
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
      raise ValueError(
        f"{path}: column {column!r} must hold integer epochs; got {table[column][bad].tolist()[:5]}."
      )
    epoch = values.astype(np.int64)
  duplicated = pd.DataFrame({"model": codes, "epoch": epoch}).duplicated(keep=False).to_numpy()
  if duplicated.any():
    first = np.flatnonzero(duplicated)[0]
    rows = np.flatnonzero((codes == codes[first]) & (epoch == epoch[first])).tolist()
    raise ValueError(
      f"{path}: model {sources[codes[first]]!r} has several rows at epoch {epoch[first]} (rows {rows})."
    )
  return np.asarray(codes), epoch, sources


WEIGHT_DECAY_SEMANTICS = "keras_l2_kernels"
# dataset.preprocess fields that reproduce the Small CNN Zoo's inputs (image_size: the dataset's own).
PREPROCESS = {"grayscale": "mean", "channels": 1, "mean": [0.5], "std": [0.5]}


def _models_table(
  table: pd.DataFrame, model: np.ndarray, sources: list[str], path: str
) -> pd.DataFrame:
  config = [c for c in table.columns if c.startswith("config.")]
  if config:
    varying = table[config].groupby(model).nunique(dropna=False).max()
    if (varying > 1).any():
      raise ValueError(
        f"{path}: rows of one model disagree on {varying[varying > 1].index.tolist()}; "
        "expected the same hyperparameters at every epoch of a model."
      )
  first_row = pd.Series(np.arange(len(table))).groupby(model).first()
  first = table.iloc[first_row.loc[np.arange(len(sources))].to_numpy()].reset_index(drop=True)
  if _HPARAM_COLUMNS["activation"] not in table:
    raise ValueError(
      f"{path}: column {_HPARAM_COLUMNS['activation']!r} is missing; it is required to rebuild "
      "the models."
    )
  bad = sorted(set(first[_HPARAM_COLUMNS["activation"]].astype(str)) - set(ACTIVATION_NAMES))
  if bad:
    raise ValueError(
      f"{path}: {_HPARAM_COLUMNS['activation']} values {bad} have no zoo_jax activation; "
      f"supported: {sorted(ACTIVATION_NAMES)}."
    )
  models = pd.DataFrame(index=range(len(sources)))
  for ours in writer.HPARAM_COLUMNS:
    theirs = _HPARAM_COLUMNS.get(ours)
    if ours == "arch":
      models[ours] = ARCH
    elif theirs in table:
      values = first[theirs].to_numpy()
      models[ours] = [ACTIVATION_NAMES[str(v)] for v in values] if ours == "activation" else values
    else:
      models[ours] = np.nan
  for ours in ("seed", "dropout", "learning_rate", "weight_decay"):
    models[ours] = pd.to_numeric(models[ours], errors="raise")
  for ours in ("init", "optimizer"):
    models[ours] = models[ours].fillna("").astype(str)
  models["source"] = sources
  # How these models were trained, for re-evaluation and fine-tuning (train_network.py of the zoo):
  # weight_decay is `l2reg`, a Keras L2 penalty l2reg * sum(W^2) on the kernels only (gradient
  # 2 * l2reg * W, biases free), not PyTorch's weight_decay (gradient wd * W on every parameter).
  models["weight_decay_semantics"] = WEIGHT_DECAY_SEMANTICS
  models["preprocess"] = json.dumps(PREPROCESS)
  for column in config:
    if column not in _HPARAM_COLUMNS.values():
      models[column] = first[column].to_numpy()
  return models


def _row_params(weights: np.ndarray, row: int, layers: dict) -> dict:
  """One weights row -> zoo_jax params (a copy: weights.npy stays memory-mapped)."""
  flat = np.asarray(weights[row], np.float32)
  return {
    name: {kind: flat[start:end].reshape(shape) for kind, (start, end, shape) in layer.items()}
    for name, layer in layers.items()
  }
