"""Writes a scanned published zoo into the zoo_jax store, one epoch at a time, resumably.

A reader (modelzoos.py, cnn_zoo.py) turns a published layout into a `Source`: the models
table, the epochs, the published metrics, and a function that loads every model's weights at
one epoch. `write` turns that into exactly the store that `zoo_jax.zoo.Zoo` reads:

    WORKDIR/config.json    {"source_format", "src", "converted_by"}
    WORKDIR/models.csv     model_id, cohort, cohort_index, seed, arch, activation, dropout, init,
                           optimizer, learning_rate, weight_decay, source (+ reader-specific columns)
    WORKDIR/metrics.csv    model_id, epoch, train/validation/test loss and acc, gen_gap, status
    WORKDIR/checkpoints/   Orbax, step = epoch, {cohort: {"params": [P, ...], "metrics": {name: [P]},
                           and the model's other collections: "batch_stats" (ResNet-18's BatchNorm
                           statistics), "log_sigma2" (a sparsified twin's variances)}}, written by
                           zoo.ZooWriter (weights only), the one writer of the zoo format

Imported zoos have weights but no training state, so there is no state/ folder; each
checkpoint step is the unit of resumption instead. Every step also stores the flags
`diverged` and `missing` per model, so metrics.csv is rebuilt from the committed steps alone.
status is "missing" where a model has no weights at an epoch (its weights are NaN),
"diverged" where its weights are not finite or the source reported a non-finite loss, "ok"
otherwise. Metrics the source does not report are NaN; metrics beyond zoo.METRIC_COLUMNS
(a twin's `sparsity`) become extra columns of metrics.csv, as in a twin zoo_jax trains.
"""

import dataclasses
import os
from typing import Any, Callable, Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from zoo_jax.engine import grid, variational
from zoo_jax import models as zoo_models
from zoo_jax import zoo

STATUS_MISSING = zoo.STATUS_MISSING
# The hyperparameter columns of a trained zoo's models.csv (see zoo_jax.engine.grid), in its order.
HPARAM_COLUMNS = (
  "seed",
  "arch",
  "activation",
  "dropout",
  "init",
  "optimizer",
  "learning_rate",
  "weight_decay",
)
_FLAGS = ("diverged", "missing")


@dataclasses.dataclass(frozen=True)
class Source:
  """A published zoo, scanned (cheaply: tables and file lists, no weights yet).

  models: one row per model, in model_id order: HPARAM_COLUMNS (NaN where unknown), `source`
    (the published name of the model), and any reader-specific columns.
  structure: per model, a hashable key of everything that fixes its variable shapes and its
    vmap (arch, input channels, activation, optimizer, dropout on/off, ...); equal keys share a
    cohort (numbered by grid.index_models).
  shapes: per structure key, the variables of one model ({"params": ..., and any other
    collection}) as pytrees of jax.ShapeDtypeStruct.
  epochs: the epochs for which at least one model has weights, ascending.
  metrics: rows (model, epoch) with zoo.METRIC_COLUMNS as published (NaN = not reported),
    `loss_diverged` (the source reported a non-finite loss) and any extra metric columns
    (e.g. `sparsity`); `model` is the row of `models`.
  read_epoch: epoch -> per model, its variables at that epoch in zoo_jax layout (the
    collections of `shapes`), or None if absent.
  """

  models: pd.DataFrame
  structure: Sequence[Hashable]
  shapes: dict[Hashable, Any]
  epochs: Sequence[int]
  metrics: pd.DataFrame
  read_epoch: Callable[[int], list[Any]]


def variable_shapes(
  arch: str,
  channels: int,
  size: int | None = None,
  num_classes: int = 10,
  collections: Sequence[str] = (),
) -> dict:
  """The variables of one `arch` model on `channels`-channel inputs, as ShapeDtypeStruct pytrees:
  {"params", the model's own collections ("batch_stats" of ResNet-18)}, plus "log_sigma2" (a
  sparsified twin, zoo_jax.sparsify's layout) when asked for in `collections`."""
  size = size or (zoo_models.INPUT_SIZES.get(arch) or (28, 28))[0]
  model = zoo_models.get_model(
    arch,
    activation="relu" if arch == "resnet18" else "tanh",
    init="kaiming_uniform",
    num_classes=num_classes,
  )
  shapes = dict(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, channels))))
  if "log_sigma2" in collections:
    shapes["log_sigma2"] = jax.eval_shape(
      lambda p: variational.init_log_sigma2(p, 0.0), shapes["params"]
    )
  return shapes


def param_shapes(arch: str, channels: int, size: int | None = None) -> Any:
  """The params pytree of ShapeDtypeStruct of one `arch` model on `channels`-channel inputs."""
  return variable_shapes(arch, channels, size)["params"]


def check_shapes(params: Any, expected: Any, where: str) -> None:
  """Raises a ValueError naming `where`, the layer and both shapes when `params` does not fit."""
  if jax.tree.structure(params) != jax.tree.structure(expected):
    raise ValueError(
      f"{where}: layers {_layer_names(params)} do not match the expected {_layer_names(expected)}."
    )
  for (path, got), want in zip(
    jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(expected)
  ):
    if tuple(np.shape(got)) != tuple(want.shape):
      raise ValueError(
        f"{where}: {jax.tree_util.keystr(path)} has shape {tuple(np.shape(got))}, "
        f"expected {tuple(want.shape)}."
      )


def _layer_names(tree) -> list[str]:
  return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def models_table(source: Source) -> pd.DataFrame:
  """The models.csv table: ids and cohorts (grid.index_models, keyed by the source's structure),
  HPARAM_COLUMNS, then the source's other columns."""
  table = source.models.reset_index(drop=True).copy()
  seed = pd.to_numeric(table["seed"], errors="coerce")
  if seed.notna().all() and (seed == seed.round()).all():
    table["seed"] = seed.astype(np.int64)  # integer seeds, as in a trained zoo's table
  rest = [c for c in table.columns if c not in HPARAM_COLUMNS]
  return grid.index_models(table[[*HPARAM_COLUMNS, *rest]], keys=source.structure)


def _prepare_workdir(workdir: str, source_format: str, src: str, table: pd.DataFrame) -> dict:
  """Checks that the zoo in the workdir, if any, was converted from this source; returns its config."""
  config = {
    "source_format": source_format,
    "src": os.path.abspath(src),
    "converted_by": "zoo_jax.convert",
  }
  zoo.claim(
    workdir,
    config,
    {zoo.MODELS_FILE: table},
    holds=f"another zoo (not this {source_format} conversion of {src!r})",
  )
  return config


def _metric_names(source: Source) -> list[str]:
  """zoo.METRIC_COLUMNS, then the source's extra metrics (a twin's sparsity)."""
  extra = [
    c
    for c in source.metrics.columns
    if c not in ("model", "epoch", "loss_diverged", *zoo.METRIC_COLUMNS)
  ]
  return [*zoo.METRIC_COLUMNS, *extra]


def _epoch_step(
  source: Source, table: pd.DataFrame, epoch: int, weights: list[Any]
) -> tuple[dict, dict, dict]:
  """(params, metrics, other collections) of one epoch's step, per cohort: stacked [P, ...]
  variables (NaN where a model has none), and [P] metrics with the diverged and missing flags."""
  published = source.metrics[source.metrics["epoch"] == epoch].set_index("model")
  params, metrics, state = {}, {}, {}
  for cohort, rows in table.groupby("cohort", sort=True):
    rows = rows.sort_values("cohort_index")
    ids = rows["model_id"].to_numpy()
    shapes = source.shapes[source.structure[ids[0]]]
    missing = np.array([weights[i] is None for i in ids])
    nan = jax.tree.map(lambda s: np.full(s.shape, np.nan, np.float32), shapes)
    variables = jax.tree.map(
      lambda *leaves: np.stack([np.asarray(x, np.float32) for x in leaves]),
      *[nan if weights[i] is None else weights[i] for i in ids],
    )
    at = published.reindex(ids)
    cohort_metrics = {name: at[name].to_numpy(np.float64) for name in _metric_names(source)}
    finite = np.all(
      np.stack(
        [np.isfinite(x.reshape(len(ids), -1)).all(axis=1) for x in jax.tree.leaves(variables)]
      ),
      axis=0,
    )
    loss_diverged = at["loss_diverged"].fillna(False).to_numpy(bool)
    cohort_metrics["diverged"] = ~missing & (~finite | loss_diverged)
    cohort_metrics["missing"] = missing
    params[int(cohort)] = variables.pop("params")
    metrics[int(cohort)] = cohort_metrics
    state[int(cohort)] = variables or None
  return params, metrics, state


def write(
  source: Source, source_format: str, src: str, workdir: str, progress_bar: bool = False
) -> zoo.Zoo:
  """Converts `source` into `workdir`, continuing after the last committed epoch of an earlier run."""
  if not len(source.models):
    raise ValueError(f"No models found in {src!r}.")
  table = models_table(source)
  with zoo.writing(workdir):  # one writer per workdir
    return _write(source, source_format, src, workdir, table, progress_bar)


def _write(
  source: Source,
  source_format: str,
  src: str,
  workdir: str,
  table: pd.DataFrame,
  progress_bar: bool,
) -> zoo.Zoo:
  config = _prepare_workdir(workdir, source_format, src, table)
  writer = zoo.ZooWriter(workdir, zoo.store_metadata(config, table), training_state=False)
  try:
    committed = set(writer.steps())
    history = {
      epoch: zoo.epoch_rows(table, epoch, writer.epoch_metrics(epoch)) for epoch in committed
    }
    todo = [epoch for epoch in source.epochs if epoch not in committed]
    bar = tqdm(
      total=len(source.epochs),
      initial=len(source.epochs) - len(todo),
      unit="epoch",
      desc="convert",
      disable=not progress_bar,
      dynamic_ncols=True,
    )
    _write_metrics(history, workdir)
    for epoch in todo:
      params, metrics, state = _epoch_step(source, table, epoch, source.read_epoch(epoch))
      writer.save_weights(epoch, params, metrics, state)
      history[epoch] = zoo.epoch_rows(table, epoch, metrics)
      _write_metrics(history, workdir)
      bar.update(1)
    bar.close()
  finally:
    writer.close()
  return zoo.Zoo(workdir)


def _write_metrics(history: dict[int, pd.DataFrame], workdir: str) -> None:
  columns = list(zoo.METRICS_TABLE_COLUMNS)
  if not history:
    table = pd.DataFrame(columns=columns)
  else:
    table = pd.concat([history[e] for e in sorted(history)], ignore_index=True)
    extra = [c for c in table.columns if c not in columns]  # a twin's sparsity, before status
    table = table[columns[:-1] + extra + columns[-1:]]
  zoo.write_table_atomic(table, os.path.join(workdir, zoo.METRICS_FILE))
