"""Smaller zoos and framework-neutral copies: `slice_zoo` (same format, new ids) and `export`
(one safetensors file per epoch plus the tables as CSV)."""

import os
from typing import Any, Sequence

import jax
import numpy as np
import pandas as pd

from zoo_jax.zoo import guard
from zoo_jax.zoo.files import METRICS_FILE, MODELS_FILE, write_table_atomic
from zoo_jax.zoo.store import item_metadata, read_cohorts, store_metadata
from zoo_jax.zoo.reader import Zoo
from zoo_jax.zoo.writer import ZooWriter


def parse_epochs(text: str | None) -> list[int] | None:
  """`--epochs`: "0,5,-1" (negative counts back from the newest) -> [0, 5, -1]; empty or None: all."""
  if not text:
    return None
  try:
    return [int(e) for e in text.split(",")]
  except ValueError:
    raise ValueError(
      f"--epochs must be a comma-separated list of integers (e.g. 0,5,-1), got {text!r}."
    ) from None


def parse_select(text: str | None) -> dict[str, Any]:
  """`--select`: "activation=tanh,optimizer=adam|sgd,status=ok,min_test_acc=0.5" -> Zoo.select's keywords.

  `|` separates alternatives; numbers are read as numbers; `model_id=3|7` picks models by id.
  """
  if not text:
    return {}
  selection = {}
  for part in text.split(","):
    name, sep, value = part.partition("=")
    if not sep or not name.strip() or not value:
      raise ValueError(
        f"--select takes FIELD=VALUE[|VALUE...] pairs separated by commas, got {part!r} in {text!r}."
      )
    values = [_number_or_text(v) for v in value.split("|")]
    selection[name.strip()] = (
      values if len(values) > 1 or name.strip() not in ("status", "min_test_acc") else values[0]
    )
  return selection


def _number_or_text(value: str) -> Any:
  for kind in (int, float):
    try:
      return kind(value)
    except ValueError:
      pass
  return value


def _selection(source: "Zoo", model_ids: Sequence[int] | None, epochs: Sequence[int] | None):
  ids = np.unique(source._model_ids(model_ids))
  if not len(ids):
    raise ValueError(f"The selection holds no model of zoo {source.workdir!r}.")
  chosen = sorted({source._epoch(e) for e in epochs}) if epochs is not None else list(source.epochs)
  return ids, chosen


def slice_zoo(
  src: str, dst: str, model_ids: Sequence[int] | None = None, epochs: Sequence[int] | None = None
) -> "Zoo":
  """Writes the selected models at the selected epochs of zoo `src` as a new zoo `dst`.

  Same on-disk format (ZooWriter, weights-only: no state/), read by `Zoo`. Models get new ids
  0..n-1 in source order (`source_model_id` keeps the old ones), cohorts are renumbered, epochs
  keep their numbers; weights and metrics are those of the source, read lazily one epoch at a
  time (memory: one epoch of the selection). Re-running the same slice resumes it.
  """
  with guard.writing(dst, "--dst"):  # the lock first, as every writing command
    source = Zoo(src)
    ids, chosen = _selection(source, model_ids, epochs)
    table = source.models.set_index("model_id").loc[ids].reset_index()
    source_cohort, source_index = table["cohort"].to_numpy(), table["cohort_index"].to_numpy()
    cohort = pd.Series(pd.factorize(source_cohort, sort=True)[0])
    table = table.drop(
      columns=["model_id", "cohort", "cohort_index", "source_model_id"], errors="ignore"
    )
    table.insert(0, "cohort_index", cohort.groupby(cohort).cumcount().to_numpy())
    table.insert(0, "cohort", cohort.to_numpy())
    table.insert(0, "source_model_id", ids)
    table.insert(0, "model_id", np.arange(len(ids)))
    record = {
      "sliced_from": os.path.abspath(src),
      "source_model_ids": ids.tolist(),
      "epochs": chosen,
      "source_config": source.config,
      "read": [guard.read_models(source, ids, chosen)],
    }
    rows = {int(c): np.sort(source_index[source_cohort == c]) for c in np.unique(source_cohort)}
    new_cohort = {int(c): int(n) for c, n in zip(source_cohort, cohort)}
    metrics = source.metrics[
      source.metrics["model_id"].isin(ids) & source.metrics["epoch"].isin(chosen)
    ].copy()
    metrics["model_id"] = np.searchsorted(ids, metrics["model_id"].to_numpy())
    metrics = metrics.sort_values(["epoch", "model_id"], kind="stable").reset_index(drop=True)
    try:
      guard.claim(
        dst, record, read=record["read"], holds="another zoo or another selection", flag="--dst"
      )
      if not os.path.exists(os.path.join(dst, MODELS_FILE)):
        write_table_atomic(table, os.path.join(dst, MODELS_FILE))
      writer = ZooWriter(dst, store_metadata(record, table), training_state=False)
      try:
        for epoch in chosen:
          if epoch not in writer.steps():
            params = read_cohorts(source._manager, epoch, rows)
            stored = read_cohorts(source._manager, epoch, rows, "metrics")
            writer.save_weights(
              epoch,
              {new_cohort[c]: params[c] for c in rows},
              {new_cohort[c]: stored[c] for c in rows},
              {new_cohort[c]: state for c, state in _collections(source, epoch, rows).items()},
            )
          committed = writer.steps()
          write_table_atomic(
            metrics[metrics["epoch"].isin(committed)], os.path.join(dst, METRICS_FILE)
          )
      finally:
        writer.close()
    finally:
      source.close()
  return Zoo(dst)


def _collections(source: "Zoo", epoch: int, rows: dict[int, np.ndarray]) -> dict[int, dict | None]:
  """Per cohort, the selected rows of every stored collection besides params and metrics
  (BatchNorm's batch_stats, a twin's log_sigma2); None where a cohort has none."""
  metadata = item_metadata(source._manager, epoch)
  out = {}
  for c, r in rows.items():
    names = [k for k in metadata[str(c)] if k not in ("params", "metrics")]
    out[c] = {k: read_cohorts(source._manager, epoch, {c: r}, k)[c] for k in names} or None
  return out


EXPORT_FORMAT = "zoo_jax.export/1"


def export(
  src: str, dst: str, model_ids: Sequence[int] | None = None, epochs: Sequence[int] | None = None
) -> list[str]:
  """Writes zoo `src` in framework-neutral files that need neither JAX nor Orbax; returns their paths.

      DST/config.json                   the source zoo's config, the format and the selection
      DST/models.csv, DST/metrics.csv   the zoo's tables (selected models and epochs)
      DST/epoch_0003.safetensors        per epoch, per cohort C: "cohort_C/model_id" int64 [n] and
                                        "cohort_C/params/<layer>/<name>" float32 [n, ...], rows in
                                        model_id order; padding rows are not exported

  safetensors (numpy, PyTorch, JAX, Rust and the Hugging Face hub read it) stores named
  N-d tensors with a JSON header, read lazily per tensor with memory mapping and no pickle.
  One file per epoch: a reader fetches the epochs it needs. Re-running skips written epochs.
  """
  from safetensors.numpy import save_file

  with guard.writing(dst, "--dst"):  # the lock first, as every writing command
    source = Zoo(src)
    try:
      ids, chosen = _selection(source, model_ids, epochs)
      guard.claim(
        dst,
        {
          "format": EXPORT_FORMAT,
          "exported_from": os.path.abspath(src),
          "model_ids": ids.tolist(),
          "epochs": chosen,
          "source_config": source.config,
        },
        read=[guard.read_models(source, ids, chosen)],
        holds="another zoo or another selection",
        flag="--dst",
      )
      table = source.models.set_index("model_id").loc[ids].reset_index()
      write_table_atomic(table, os.path.join(dst, MODELS_FILE))
      write_table_atomic(
        source.metrics[source.metrics["model_id"].isin(ids) & source.metrics["epoch"].isin(chosen)],
        os.path.join(dst, METRICS_FILE),
      )
      rows = {int(c): np.sort(g["cohort_index"].to_numpy()) for c, g in table.groupby("cohort")}
      paths = []
      for epoch in chosen:
        path = os.path.join(dst, f"epoch_{epoch:04d}.safetensors")
        paths.append(path)
        if os.path.exists(path):
          continue
        tensors = {}
        for c, params in read_cohorts(source._manager, epoch, rows).items():
          by_index = table[table["cohort"] == c].set_index("cohort_index")["model_id"]
          tensors[f"cohort_{c}/model_id"] = by_index.loc[rows[c]].to_numpy(np.int64)
          for key, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            name = "/".join(str(getattr(k, "key", k)) for k in key)
            tensors[f"cohort_{c}/params/{name}"] = np.ascontiguousarray(leaf)
        tmp = path + ".tmp"
        save_file(tensors, tmp, metadata={"format": EXPORT_FORMAT, "epoch": str(epoch)})
        os.replace(tmp, path)
    finally:
      source.close()
  return paths
