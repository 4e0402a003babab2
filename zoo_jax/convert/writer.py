"""Writes a scanned published zoo into the zoo_jax store, one epoch at a time, resumably.

A reader (modelzoos.py, cnn_zoo.py) turns a published layout into a `Source`: the models
table, the epochs, the published metrics, and a function that loads every model's weights at
one epoch. `write` turns that into exactly the store that `zoo_jax.zoo.Zoo` reads:

    WORKDIR/config.json    {"source_format", "src", "converted_by"}
    WORKDIR/models.csv     model_id, cohort, cohort_index, seed, arch, activation, dropout, init,
                           optimizer, learning_rate, weight_decay, source (+ reader-specific columns)
    WORKDIR/metrics.csv    model_id, epoch, train/validation/test loss and acc, gen_gap, status
    WORKDIR/checkpoints/   Orbax, step = epoch, {cohort: {"params": [P, ...], "metrics": {name: [P]}}}

Imported zoos have weights but no training state, so there is no state/ folder; each
checkpoint step is the unit of resumption instead. Every step also stores the flags
`diverged` and `missing` per model, so metrics.csv is rebuilt from the committed steps alone.
status is "missing" where a model has no weights at an epoch (its weights are NaN),
"diverged" where its weights are not finite or the source reported a non-finite loss, "ok"
otherwise. Metrics the source does not report are NaN.

A candidate for zoo.py as a public `ZooWriter.save_weights(epoch, params, metrics)`
(a weights-only step).
"""

import dataclasses
import io
import os
from typing import Any, Callable, Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
from tqdm.auto import tqdm

from zoo_jax import lock
from zoo_jax import models as zoo_models
from zoo_jax import zoo

STATUS_MISSING = zoo.STATUS_MISSING
# The hyperparameter columns of a trained zoo's models.csv (see zoo_jax.grid), in its order.
HPARAM_COLUMNS = ("seed", "arch", "activation", "dropout", "init", "optimizer", "learning_rate", "weight_decay")
_FLAGS = ("diverged", "missing")


@dataclasses.dataclass(frozen=True)
class Source:
  """A published zoo, scanned (cheaply: tables and file lists, no weights yet).

  models: one row per model, in model_id order: HPARAM_COLUMNS (NaN where unknown), `source`
    (the published name of the model), and any reader-specific columns.
  structure: per model, a hashable key of everything that fixes its parameter shapes and its
    vmap (arch, input channels, activation, optimizer, dropout on/off); equal keys share a cohort.
  shapes: per structure key, the params pytree of jax.ShapeDtypeStruct of one model.
  epochs: the epochs for which at least one model has weights, ascending.
  metrics: rows (model, epoch) with zoo.METRIC_COLUMNS as published (NaN = not reported) and
    `loss_diverged` (the source reported a non-finite loss); `model` is the row of `models`.
  read_epoch: epoch -> per model, its params at that epoch in zoo_jax layout, or None if absent.
  """

  models: pd.DataFrame
  structure: Sequence[Hashable]
  shapes: dict[Hashable, Any]
  epochs: Sequence[int]
  metrics: pd.DataFrame
  read_epoch: Callable[[int], list[Any]]


def param_shapes(arch: str, channels: int, size: int | None = None) -> Any:
  """The params pytree of ShapeDtypeStruct of one `arch` model on `channels`-channel inputs."""
  size = size or (zoo_models.INPUT_SIZES.get(arch) or (28, 28))[0]
  model = zoo_models.get_model(arch)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, channels)))
  return shapes["params"]


def check_shapes(params: Any, expected: Any, where: str) -> None:
  """Raises a ValueError naming `where`, the layer and both shapes when `params` does not fit."""
  if jax.tree.structure(params) != jax.tree.structure(expected):
    raise ValueError(f"{where}: layers {_layer_names(params)} do not match the expected {_layer_names(expected)}.")
  for (path, got), want in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(expected)):
    if tuple(np.shape(got)) != tuple(want.shape):
      raise ValueError(f"{where}: {jax.tree_util.keystr(path)} has shape {tuple(np.shape(got))}, "
                       f"expected {tuple(want.shape)}.")


def _layer_names(tree) -> list[str]:
  return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def models_table(source: Source) -> pd.DataFrame:
  """The models.csv table: ids, cohorts in order of first appearance, then the source's columns."""
  keys = list(source.structure)
  cohort_ids = {key: i for i, key in enumerate(dict.fromkeys(keys))}
  table = source.models.reset_index(drop=True).copy()
  seed = pd.to_numeric(table["seed"], errors="coerce")
  if seed.notna().all() and (seed == seed.round()).all():
    table["seed"] = seed.astype(np.int64)  # integer seeds, as in a trained zoo's table
  cohort = pd.Series([cohort_ids[k] for k in keys], dtype=int)
  front = pd.DataFrame({"model_id": np.arange(len(table)), "cohort": cohort,
                        "cohort_index": cohort.groupby(cohort).cumcount().to_numpy()})
  rest = [c for c in table.columns if c not in HPARAM_COLUMNS]
  return pd.concat([front, table[list(HPARAM_COLUMNS)], table[rest]], axis=1)


def _csv_roundtrip(table: pd.DataFrame) -> pd.DataFrame:
  return pd.read_csv(io.StringIO(table.to_csv(index=False)))


def _prepare_workdir(workdir: str, source_format: str, src: str, table: pd.DataFrame) -> dict:
  """Checks that the zoo in the workdir, if any, was converted from this source; returns its config."""
  config_path, models_path = os.path.join(workdir, zoo.CONFIG_FILE), os.path.join(workdir, zoo.MODELS_FILE)
  config = {"source_format": source_format, "src": os.path.abspath(src), "converted_by": "zoo_jax.convert"}
  if os.path.exists(config_path):
    old = zoo.read_json(config_path)
    if old.get("source_format") != source_format:
      raise ValueError(f"Workdir {workdir!r} holds a zoo not converted from {source_format!r} "
                       f"(its config.json: {old}). Use another --workdir.")
  if os.path.exists(models_path):
    old_table = pd.read_csv(models_path)
    if not old_table.equals(_csv_roundtrip(table)):
      raise ValueError(
          f"Workdir {workdir!r} holds a conversion of another zoo: its {zoo.MODELS_FILE} ({len(old_table)} models) "
          f"differs from the models found in {src!r} ({len(table)}). Use another --workdir, or delete that one.")
    return zoo.stored_metadata(workdir).get("config", config)
  zoo.write_json_atomic(config, config_path)
  zoo.write_table_atomic(table, models_path)
  return config


def _epoch_tree(source: Source, table: pd.DataFrame, epoch: int, weights: list[Any]) -> dict:
  """The checkpoint step of one epoch: per cohort, stacked params and [P] metrics and flags."""
  published = source.metrics[source.metrics["epoch"] == epoch].set_index("model")
  tree = {}
  for cohort, rows in table.groupby("cohort", sort=True):
    rows = rows.sort_values("cohort_index")
    ids = rows["model_id"].to_numpy()
    shapes = source.shapes[source.structure[ids[0]]]
    missing = np.array([weights[i] is None for i in ids])
    nan = jax.tree.map(lambda s: np.full(s.shape, np.nan, np.float32), shapes)
    params = jax.tree.map(lambda *leaves: np.stack([np.asarray(x, np.float32) for x in leaves]),
                          *[nan if weights[i] is None else weights[i] for i in ids])
    at = published.reindex(ids)
    metrics = {name: at[name].to_numpy(np.float64) for name in zoo.METRIC_COLUMNS}
    finite = np.all(np.stack([np.isfinite(x.reshape(len(ids), -1)).all(axis=1)
                              for x in jax.tree.leaves(params)]), axis=0)
    loss_diverged = at["loss_diverged"].fillna(False).to_numpy(bool)
    metrics["diverged"] = ~missing & (~finite | loss_diverged)
    metrics["missing"] = missing
    tree[str(cohort)] = {"params": params, "metrics": metrics}
  return tree


def _metrics_rows(table: pd.DataFrame, epoch: int, tree: dict) -> pd.DataFrame:
  return zoo.epoch_rows(table, epoch, {c: v["metrics"] for c, v in tree.items()})


def write(source: Source, source_format: str, src: str, workdir: str, progress_bar: bool = False) -> zoo.Zoo:
  """Converts `source` into `workdir`, continuing after the last committed epoch of an earlier run."""
  if not len(source.models):
    raise ValueError(f"No models found in {src!r}.")
  table = models_table(source)
  os.makedirs(workdir, exist_ok=True)
  with lock.workdir_lock(workdir):  # one writer per workdir
    return _write(source, source_format, src, workdir, table, progress_bar)


def _write(source: Source, source_format: str, src: str, workdir: str, table: pd.DataFrame,
           progress_bar: bool) -> zoo.Zoo:
  config = _prepare_workdir(workdir, source_format, src, table)
  manager = zoo._open_manager(os.path.join(workdir, zoo.CHECKPOINTS_DIR), zoo.store_metadata(config, table),
                              create=True, max_to_keep=None)
  try:
    committed = set(manager.all_steps())
    history = {epoch: zoo.epoch_rows(table, epoch, zoo.restore_metrics(manager, epoch)) for epoch in committed}
    todo = [epoch for epoch in source.epochs if epoch not in committed]
    bar = tqdm(total=len(source.epochs), initial=len(source.epochs) - len(todo), unit="epoch",
               desc="convert", disable=not progress_bar, dynamic_ncols=True)
    _write_metrics(history, workdir)
    for epoch in todo:
      tree = _epoch_tree(source, table, epoch, source.read_epoch(epoch))
      manager.save(epoch, args=ocp.args.StandardSave(tree))
      manager.wait_until_finished()
      history[epoch] = _metrics_rows(table, epoch, tree)
      _write_metrics(history, workdir)
      bar.update(1)
    bar.close()
  finally:
    manager.close()
  return zoo.Zoo(workdir)


def _write_metrics(history: dict[int, pd.DataFrame], workdir: str) -> None:
  columns = ["model_id", "epoch", *zoo.METRIC_COLUMNS, "gen_gap", "status"]
  table = (pd.concat([history[e] for e in sorted(history)], ignore_index=True) if history
           else pd.DataFrame(columns=columns))
  zoo.write_table_atomic(table[columns], os.path.join(workdir, zoo.METRICS_FILE))
