"""The zoo on disk: write it epoch by epoch, resume it, read it back as a dataset.

    WORKDIR/
      config.json     the resolved config of the run
      models.csv      one row per model: model_id, cohort, cohort_index, seed, arch, hyperparameters
      metrics.csv     one row per (model, epoch): train/validation/test loss and accuracy, gap, status
      checkpoints/    Orbax, step = epoch (0 = initial weights), every epoch kept:
                      {cohort: {"params": [P, ...], "metrics": {name: [P]}}}
      state/          Orbax, the last two epochs' full training state (params, optimizer, flags)

Tables are CSV: a few MB even for 1,000 models x 50 epochs, one line to open in pandas
(or R, or a spreadsheet), no extra dependency, and diffable. The checkpoint is the
source of truth: each step holds the epoch's metrics too, and metrics.csv is rewritten
atomically after the step is committed, so a reader never sees a table row whose
weights are missing. A dead run resumes from the newest intact `state/` step.
"""

import json
import logging
import os
import shutil
import tempfile
from typing import Any, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
import tensorstore as ts
import warnings

CONFIG_FILE, MODELS_FILE, METRICS_FILE = "config.json", "models.csv", "metrics.csv"
CHECKPOINTS_DIR, STATE_DIR = "checkpoints", "state"
METRIC_COLUMNS = ("train_loss", "train_acc", "validation_loss", "validation_acc", "test_loss", "test_acc")
STATUS_OK, STATUS_DIVERGED = "ok", "diverged"
STATUS_MISSING = "missing"  # imported zoos: the source has no weights for that (model, epoch)
STATUSES = (STATUS_OK, STATUS_DIVERGED, STATUS_MISSING)
# Weights are stored in chunks of at most this many bytes, split along the model axis first, so
# that reading a few models of a big cohort reads a few chunks, not the whole leaf (Zoo.params).
# 64 KiB: a few CNN-s models per chunk of the largest leaf, so an encoder's random minibatches
# (encode.StreamedFlat) read little beyond the models they draw; Orbax warns below 1 MiB.
CHUNK_BYTES = 1 << 16


def _write_atomic(path: str, write: Any, suffix: str) -> None:
  """Writes through `write(file)` so that readers see the old file or the new one, never half of one."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp_", suffix=suffix)
  with os.fdopen(fd, "w") as f:
    write(f)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_table_atomic(table: pd.DataFrame, path: str) -> None:
  _write_atomic(path, lambda f: table.to_csv(f, index=False), ".csv")


def write_json_atomic(obj: Any, path: str) -> None:
  _write_atomic(path, lambda f: json.dump(obj, f, indent=2, sort_keys=True), ".json")


def _open_manager(directory: str, **options) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(**options),
                               item_handlers=ocp.StandardCheckpointHandler())


def restore_numpy(manager: ocp.CheckpointManager, step: int) -> Any:
  """Restores a step as host numpy arrays, whatever devices or mesh it was saved from."""
  try:
    target = jax.tree.map(lambda m: np.empty(m.shape, m.dtype), manager.item_metadata(step))
    return manager.restore(step, args=ocp.args.StandardRestore(target))
  except Exception as error:  # orbax/tensorstore raise many types for damaged files
    raise ValueError(f"Checkpoint step {step} in {manager.directory} is unreadable (truncated or corrupted: "
                     f"{type(error).__name__}: {str(error)[:200]}). Other epochs are unaffected; delete "
                     "that step folder and re-run training to rewrite it.") from error


def open_cohorts(manager: ocp.CheckpointManager, step: int, cohorts: Sequence[int], part: str = "params",
                 context: ts.Context | None = None) -> dict[int, Any] | None:
  """The `part` ("params" or "metrics") leaves of `cohorts` at `step`, opened as TensorStore arrays
  (nothing read yet); None for a step in an older, non-OCDBT layout."""
  step_dir = os.path.join(os.path.abspath(str(manager.directory)), str(step), "default")
  with open(os.path.join(step_dir, "_METADATA")) as f:
    stored = json.load(f)
  if not stored.get("use_ocdbt", False):
    return None
  metadata = manager.item_metadata(step)
  context = context or ts.Context()
  driver = "zarr3" if stored.get("use_zarr3") else "zarr"
  def open_leaf(path):
    name = ".".join(str(getattr(k, "key", k)) for k in path)
    spec = {"driver": driver, "kvstore": {"driver": "ocdbt", "base": f"file://{step_dir}/", "path": name}}
    return ts.open(spec, read=True, open=True, context=context)
  futures = {c: jax.tree_util.tree_map_with_path(lambda p, _: open_leaf((str(c), part) + p), metadata[str(c)][part])
             for c in cohorts}
  return {c: jax.tree.map(lambda f: f.result(), tree) for c, tree in futures.items()}


def read_rows(opened: dict[int, Any], rows: dict[int, np.ndarray | None]) -> dict[int, Any]:
  """Reads `rows` (None: all) of every opened leaf; only the chunks holding them are read."""
  futures = {c: jax.tree.map(lambda t: (t if r is None else t[np.asarray(r, np.int64)]).read(), opened[c])
             for c, r in rows.items()}
  return {c: jax.tree.map(lambda f: np.asarray(f.result()), tree) for c, tree in futures.items()}


def read_cohorts(manager: ocp.CheckpointManager, step: int, rows: dict[int, np.ndarray | None],
                 part: str = "params") -> dict[int, Any]:
  """The `part` ("params" or "metrics") of the given cohorts at `step`, only `rows` of each leaf.

  rows: cohort -> indices into its model axis (None: all rows). Returns cohort -> pytree of
  numpy arrays [len(rows), ...]. Each leaf is opened as a TensorStore array and only the chunks
  that hold those rows are read, so the memory used is that of the selection, not of the step.
  """
  try:
    opened = open_cohorts(manager, step, list(rows), part)
    if opened is None:  # an older layout: read the step whole
      tree = restore_numpy(manager, step)
      return {c: jax.tree.map(lambda x: x if r is None else x[r], tree[str(c)][part]) for c, r in rows.items()}
    return read_rows(opened, rows)
  except Exception as error:  # orbax/tensorstore raise many types for damaged files
    raise ValueError(f"Checkpoint step {step} in {manager.directory} is unreadable (truncated or corrupted: "
                     f"{type(error).__name__}: {str(error)[:200]}). Other epochs are unaffected; delete "
                     "that step folder and re-run training to rewrite it.") from error


def metrics_rows(models: pd.DataFrame, epoch: int, metrics: dict[int, dict[str, np.ndarray]],
                 diverged: dict[int, np.ndarray]) -> pd.DataFrame:
  """The metrics table rows of one epoch, from per-cohort [P] arrays (padding dropped)."""
  frames = []
  for cohort, rows in models.groupby("cohort", sort=True):
    index = rows["cohort_index"].to_numpy()
    frame = pd.DataFrame({"model_id": rows["model_id"].to_numpy(), "epoch": epoch})
    for name in METRIC_COLUMNS:
      frame[name] = np.asarray(metrics[cohort][name], np.float64)[index]
    frame["gen_gap"] = frame["train_acc"] - frame["test_acc"]
    frame["status"] = np.where(np.asarray(diverged[cohort])[index], STATUS_DIVERGED, STATUS_OK)
    frames.append(frame)
  return pd.concat(frames).sort_values("model_id", kind="stable").reset_index(drop=True)


class _SmallChunksAreIntended(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return "target_byte_size too small" not in record.getMessage()


class ZooWriter:
  """Writes a zoo epoch by epoch; every epoch is committed whole or not at all.

  In a multi-process run every process holds one and saves its own rows of the sharded
  arrays (Orbax commits a step once all processes have written theirs).
  `training_state=False`: a weights-only zoo (a slice, an import), no state/ folder.
  """

  def __init__(self, workdir: str, training_state: bool = True):
    self.workdir = workdir
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _SmallChunksAreIntended) for f in absl_logger.filters):
      absl_logger.addFilter(_SmallChunksAreIntended())  # CHUNK_BYTES is small on purpose
    self._checkpoints = _open_manager(os.path.join(workdir, CHECKPOINTS_DIR), create=True, max_to_keep=None)
    # Two states kept, so a corrupted newest one still leaves an epoch to resume from.
    self._state = (_open_manager(os.path.join(workdir, STATE_DIR), create=True, max_to_keep=2)
                   if training_state else None)

  def restore_state(self, abstract_state: Any) -> tuple[int, Any] | None:
    """(epoch, state) of the newest intact training state, or None for a new run.

    A state step that fails to restore (truncated, corrupted) is reported and deleted,
    with every later weights step, so the run falls back to the previous epoch.
    """
    for step in sorted(self._state.all_steps(), reverse=True):
      if step not in self._checkpoints.all_steps():
        warnings.warn(f"state/{step} has no matching checkpoints/{step}; discarding it.")
        self._state.delete(step)
        continue
      try:
        state = self._state.restore(step, args=ocp.args.StandardRestore(abstract_state))
      except Exception as error:  # orbax/tensorstore raise many types for damaged files
        warnings.warn(f"Training state of epoch {step} in {os.path.join(self.workdir, STATE_DIR)} is "
                      f"unreadable ({type(error).__name__}: {str(error)[:200]}); falling back to the "
                      "previous complete epoch.")
        self._state.delete(step)
        continue
      self._drop_after(step)
      return step, state
    self._drop_after(-1)
    return None

  def _drop_after(self, epoch: int) -> None:
    for step in self._checkpoints.all_steps():
      if step > epoch:
        self._checkpoints.delete(step)
    for step in self._state.all_steps():
      if step > epoch:
        self._state.delete(step)

  def epoch_metrics(self, epoch: int) -> dict:
    """The per-cohort metrics stored in the checkpoint of `epoch` (the weights are not read)."""
    cohorts = self._checkpoints.item_metadata(epoch).keys()
    return {int(c): dict(m) for c, m in read_cohorts(self._checkpoints, epoch, dict.fromkeys(map(int, cohorts)),
                                                      "metrics").items()}

  def steps(self) -> list[int]:
    """The committed weight steps (epochs)."""
    return sorted(self._checkpoints.all_steps())

  def save_weights(self, epoch: int, params: dict[int, Any], metrics: dict[int, dict]) -> None:
    """Commits the weights and metrics of every cohort at `epoch` (a weights-only step)."""
    tree = {str(c): {"params": params[c], "metrics": metrics[c]} for c in params}
    chunked = jax.tree.map(lambda _: ocp.SaveArgs(chunk_byte_size=CHUNK_BYTES, shard_axes=(0,)), tree)
    self._checkpoints.save(epoch, args=ocp.args.StandardSave(tree, save_args=chunked))
    self._checkpoints.wait_until_finished()

  def save(self, epoch: int, params: dict[int, Any], metrics: dict[int, dict], state: Any) -> None:
    """Commits epoch `epoch`: weights and metrics of every cohort, then the training state."""
    self.save_weights(epoch, params, metrics)
    self._state.save(epoch, args=ocp.args.StandardSave(state))
    self._state.wait_until_finished()

  def close(self) -> None:
    self._checkpoints.close()
    if self._state is not None:
      self._state.close()


class Zoo:
  """A zoo on disk, read with no training code: tables as DataFrames, weights as arrays.

  Reads zoos still being written: `epochs` lists only committed epochs, and the metrics
  are cut to them.
  """

  def __init__(self, workdir: str):
    if not os.path.exists(os.path.join(workdir, MODELS_FILE)):
      raise FileNotFoundError(f"{workdir!r} is not a zoo: {MODELS_FILE} is missing. "
                              "Create one with: python -m zoo_jax.train --config=... --workdir=DIR")
    self.workdir = workdir
    with open(os.path.join(workdir, CONFIG_FILE)) as f:
      self.config = json.load(f)
    self.models = pd.read_csv(os.path.join(workdir, MODELS_FILE))
    # Not read_only (that mode cannot restore without handlers); this object never saves or deletes.
    self._manager = _open_manager(os.path.join(workdir, CHECKPOINTS_DIR), create=False)
    self.epochs = sorted(self._manager.all_steps())
    metrics_path = os.path.join(workdir, METRICS_FILE)
    metrics = pd.read_csv(metrics_path) if os.path.exists(metrics_path) else pd.DataFrame(
        columns=["model_id", "epoch", *METRIC_COLUMNS, "gen_gap", "status"])
    self.metrics = metrics[metrics["epoch"].isin(self.epochs)].reset_index(drop=True)

  def __repr__(self) -> str:
    return f"Zoo({self.workdir!r}: {len(self.models)} models, epochs {self.epochs[:1]}..{self.epochs[-1:]})"

  def _epoch(self, epoch: int) -> int:
    if not self.epochs:
      raise ValueError(f"Zoo {self.workdir!r} has no committed epoch yet.")
    resolved = self.epochs[epoch] if epoch < 0 and -len(self.epochs) <= epoch else epoch
    if resolved not in self.epochs:
      raise ValueError(f"Epoch {epoch} is not in zoo {self.workdir!r}; available epochs: {self.epochs}.")
    return resolved

  def _model_ids(self, model_ids: Sequence[int] | None) -> np.ndarray:
    if model_ids is None:
      return self.models["model_id"].to_numpy()
    ids = np.atleast_1d(np.asarray(model_ids, dtype=np.int64))
    unknown = np.setdiff1d(ids, self.models["model_id"].to_numpy())
    if unknown.size:
      raise ValueError(f"Unknown model ids {unknown[:10].tolist()} in zoo {self.workdir!r} "
                       f"(ids are 0..{len(self.models) - 1}).")
    return ids

  def params(self, model_ids: Sequence[int] | None = None, epoch: int = -1) -> Any:
    """Weights of the selected models at `epoch` (negative counts back from the newest).

    Returns a params pytree whose leaves have a leading model axis, in `model_ids` order.
    """
    ids, step = self._model_ids(model_ids), self._epoch(epoch)
    rows = self.models.set_index("model_id").loc[ids]
    metadata = self._manager.item_metadata(step)
    shapes = {str(jax.tree.structure(metadata[str(c)]["params"])) +
              str([x.shape[1:] for x in jax.tree.leaves(metadata[str(c)]["params"])])
              for c in set(rows["cohort"])}
    if len(shapes) > 1:
      raise ValueError("The selected models have different architectures; select models of one "
                       "architecture (e.g. zoo.select(arch=...)).")
    # Only the selected cohorts' selected rows are read (read_cohorts), each once.
    cohort, index = rows["cohort"].to_numpy(), rows["cohort_index"].to_numpy()
    wanted = {int(c): np.unique(index[cohort == c]) for c in np.unique(cohort)}
    per_cohort = read_cohorts(self._manager, step, wanted)
    order = sorted(wanted)
    offset = dict(zip(order, np.cumsum([0] + [len(wanted[c]) for c in order])))
    position = np.array([offset[c] + np.searchsorted(wanted[c], i) for c, i in zip(cohort, index)], np.int64)
    return jax.tree.map(lambda *leaves: np.concatenate(leaves)[position], *[per_cohort[c] for c in order])

  def flat(self, model_ids: Sequence[int] | None = None, epoch: int = -1) -> np.ndarray:
    """Weights of the selected models as a [models, n_params] array (leaves in pytree order)."""
    params = self.params(model_ids, epoch)
    leaves = jax.tree.leaves(params)
    return np.concatenate([x.reshape(x.shape[0], -1) for x in leaves], axis=1)

  def select(self, status: str | None = None, min_test_acc: float | None = None, epoch: int = -1,
             **hparams) -> np.ndarray:
    """Model ids matching hyperparameter values (a value or a list), a status and an accuracy floor.

    Status and accuracy refer to `epoch` (default: the newest committed one).
    """
    table = self.models
    for name, value in hparams.items():
      if name not in table.columns:
        raise ValueError(f"Unknown model field {name!r}; fields: {list(table.columns)}.")
      values = value if isinstance(value, (list, tuple, set)) else [value]
      table = table[table[name].isin(values)]
    ids = table["model_id"].to_numpy()
    if status is not None or min_test_acc is not None:
      at = self.metrics[self.metrics["epoch"] == self._epoch(epoch)].set_index("model_id").loc[ids]
      keep = np.ones(len(ids), bool)
      if status is not None:
        if status not in STATUSES:
          raise ValueError(f"Unknown status {status!r}; allowed values: {list(STATUSES)}.")
        keep &= (at["status"] == status).to_numpy()
      if min_test_acc is not None:
        keep &= (at["test_acc"] >= min_test_acc).to_numpy()
      ids = ids[keep]
    return ids

  def close(self) -> None:
    self._manager.close()


def parse_epochs(text: str | None) -> list[int] | None:
  """`--epochs`: "0,5,-1" (negative counts back from the newest) -> [0, 5, -1]; empty or None: all."""
  if not text:
    return None
  try:
    return [int(e) for e in text.split(",")]
  except ValueError:
    raise ValueError(f"--epochs must be a comma-separated list of integers (e.g. 0,5,-1), got {text!r}.") from None


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
      raise ValueError(f"--select takes FIELD=VALUE[|VALUE...] pairs separated by commas, got {part!r} in {text!r}.")
    values = [_number_or_text(v) for v in value.split("|")]
    selection[name.strip()] = values if len(values) > 1 or name.strip() not in ("status", "min_test_acc") \
        else values[0]
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


def slice_zoo(src: str, dst: str, model_ids: Sequence[int] | None = None,
              epochs: Sequence[int] | None = None) -> "Zoo":
  """Writes the selected models at the selected epochs of zoo `src` as a new zoo `dst`.

  Same on-disk format (ZooWriter, weights-only: no state/), read by `Zoo`. Models get new ids
  0..n-1 in source order (`source_model_id` keeps the old ones), cohorts are renumbered, epochs
  keep their numbers; weights and metrics are those of the source, read lazily one epoch at a
  time (memory: one epoch of the selection). Re-running the same slice resumes it.
  """
  source = Zoo(src)
  ids, chosen = _selection(source, model_ids, epochs)
  table = source.models.set_index("model_id").loc[ids].reset_index()
  source_cohort, source_index = table["cohort"].to_numpy(), table["cohort_index"].to_numpy()
  cohort = pd.Series(pd.factorize(source_cohort, sort=True)[0])
  table = table.drop(columns=["model_id", "cohort", "cohort_index", "source_model_id"], errors="ignore")
  table.insert(0, "cohort_index", cohort.groupby(cohort).cumcount().to_numpy())
  table.insert(0, "cohort", cohort.to_numpy())
  table.insert(0, "source_model_id", ids)
  table.insert(0, "model_id", np.arange(len(ids)))
  record = {"sliced_from": os.path.abspath(src), "source_model_ids": ids.tolist(), "epochs": chosen,
            "source_config": source.config}
  _prepare_copy(dst, record)
  if not os.path.exists(os.path.join(dst, MODELS_FILE)):
    write_table_atomic(table, os.path.join(dst, MODELS_FILE))
  rows = {int(c): np.sort(source_index[source_cohort == c]) for c in np.unique(source_cohort)}
  new_cohort = {int(c): int(n) for c, n in zip(source_cohort, cohort)}
  metrics = source.metrics[source.metrics["model_id"].isin(ids) & source.metrics["epoch"].isin(chosen)].copy()
  metrics["model_id"] = np.searchsorted(ids, metrics["model_id"].to_numpy())
  metrics = metrics.sort_values(["epoch", "model_id"], kind="stable").reset_index(drop=True)
  writer = ZooWriter(dst, training_state=False)
  try:
    for epoch in chosen:
      if epoch not in writer.steps():
        params = read_cohorts(source._manager, epoch, rows)
        stored = read_cohorts(source._manager, epoch, rows, "metrics")
        writer.save_weights(epoch, {new_cohort[c]: params[c] for c in rows},
                            {new_cohort[c]: stored[c] for c in rows})
      committed = writer.steps()
      write_table_atomic(metrics[metrics["epoch"].isin(committed)], os.path.join(dst, METRICS_FILE))
  finally:
    writer.close()
    source.close()
  return Zoo(dst)


def _prepare_copy(dst: str, record: dict) -> None:
  """Creates `dst` for a slice or export, or checks that it holds the same one (then it resumes)."""
  os.makedirs(dst, exist_ok=True)
  path = os.path.join(dst, CONFIG_FILE)
  if os.path.exists(path):
    with open(path) as f:
      if json.load(f) != json.loads(json.dumps(record)):
        raise ValueError(f"--dst {dst!r} holds another zoo or another selection; choose an empty --dst.")
    return
  if os.path.exists(os.path.join(dst, MODELS_FILE)) or os.path.exists(os.path.join(dst, CHECKPOINTS_DIR)):
    raise ValueError(f"--dst {dst!r} holds a zoo; choose an empty --dst.")
  write_json_atomic(record, path)


EXPORT_FORMAT = "zoo_jax.export/1"


def export(src: str, dst: str, model_ids: Sequence[int] | None = None,
           epochs: Sequence[int] | None = None) -> list[str]:
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
  source = Zoo(src)
  ids, chosen = _selection(source, model_ids, epochs)
  _prepare_copy(dst, {"format": EXPORT_FORMAT, "exported_from": os.path.abspath(src),
                      "model_ids": ids.tolist(), "epochs": chosen, "source_config": source.config})
  table = source.models.set_index("model_id").loc[ids].reset_index()
  write_table_atomic(table, os.path.join(dst, MODELS_FILE))
  write_table_atomic(source.metrics[source.metrics["model_id"].isin(ids) & source.metrics["epoch"].isin(chosen)],
                     os.path.join(dst, METRICS_FILE))
  rows = {int(c): np.sort(g["cohort_index"].to_numpy()) for c, g in table.groupby("cohort")}
  paths = []
  try:
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


def clear(workdir: str) -> None:
  """Removes a zoo's files (used by overwrite=True); leaves unrelated files alone."""
  for name in (CONFIG_FILE, MODELS_FILE, METRICS_FILE):
    path = os.path.join(workdir, name)
    if os.path.exists(path):
      os.remove(path)
  for name in (CHECKPOINTS_DIR, STATE_DIR):
    shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)


if __name__ == "__main__":
  import contextlib
  import sys

  from absl import app, flags
  from absl import logging as absl_logging

  _SRC = flags.DEFINE_string("src", None, "The zoo to read (a training workdir).")
  _DST = flags.DEFINE_string("dst", None, "Where the new zoo (slice) or the exported files go.")
  _EPOCHS = flags.DEFINE_string("epochs", None, "Comma-separated epochs, negative from the newest "
                                "(e.g. 0,5,-1); default: all.")
  _SELECT = flags.DEFINE_string("select", None, "Models: FIELD=VALUE[|VALUE] pairs separated by commas, "
                                "as Zoo.select takes them (activation=tanh,status=ok,min_test_acc=0.5, "
                                "model_id=0|3); default: all.")

  def _select_ids() -> np.ndarray | None:
    selection = parse_select(_SELECT.value)
    if not selection:
      return None
    with contextlib.closing(Zoo(_SRC.value)) as source:
      return source.select(**selection)

  def _slice() -> None:
    sliced = slice_zoo(_SRC.value, _DST.value, _select_ids(), parse_epochs(_EPOCHS.value))
    print(f"{sliced}  (zoo_jax.zoo.Zoo(path) reads it)")

  def _export() -> None:
    paths = export(_SRC.value, _DST.value, _select_ids(), parse_epochs(_EPOCHS.value))
    print(f"exported {len(paths)} epoch file(s) and the tables to {_DST.value}")

  # Subcommands: python -m zoo_jax.zoo NAME --flags.
  COMMANDS = {"slice": _slice, "export": _export}

  def main(argv):
    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax logs every file operation at INFO
    if len(argv) != 2 or argv[1] not in COMMANDS:
      print(f"error: give one command, one of {sorted(COMMANDS)} (got {argv[1:]}): "
            "python -m zoo_jax.zoo slice --src=ZOO --dst=OUT [--epochs=...] [--select=...]", file=sys.stderr)
      sys.exit(2)
    for name, flag in (("src", _SRC), ("dst", _DST)):
      if not flag.value:
        print(f"error: --{name} is required for `{argv[1]}`.", file=sys.stderr)
        sys.exit(2)
    try:
      COMMANDS[argv[1]]()
    except (ValueError, FileNotFoundError) as error:  # bad input: one line, no traceback
      print(f"error: {error}", file=sys.stderr)
      sys.exit(2)

  app.run(main)
