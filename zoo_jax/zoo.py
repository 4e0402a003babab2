"""The zoo on disk: write it epoch by epoch, resume it, read it back as a dataset.

    WORKDIR/
      config.json     the resolved config of the run
      models.csv      one row per model: model_id, cohort, cohort_index, seed, arch, hyperparameters
      metrics.csv     one row per (model, epoch): train/validation/test loss and accuracy, gap, status
      checkpoints/    Orbax, step = epoch (0 = initial weights), every epoch kept:
                      {cohort: {"params": [P, ...], "metrics": {name: [P]}}}, plus the model's
                      mutable collections ("batch_stats": [P, ...]) for BatchNorm models
      state/          Orbax, the last two epochs' full training state (params, optimizer, flags)

Tables are CSV: a few MB even for 1,000 models x 50 epochs, one line to open in pandas
(or R, or a spreadsheet), no extra dependency, and diffable. The checkpoint is the
source of truth: each step holds the epoch's metrics too, and metrics.csv is rewritten
atomically after the step is committed, so a reader never sees a table row whose
weights are missing. A dead run resumes from the newest intact `state/` step. The
checkpoints/ folder also keeps the config and the models table (Orbax root metadata, written
once), so every table is rebuilt from checkpoints/ alone: `Zoo` derives table rows that are
missing from the checkpoints (and says so), and refuses, naming the file, what it cannot
derive; `python -m zoo_jax.zoo check DIR [--repair]` verifies (and rewrites) everything.
One process writes a workdir at a time (zoo_jax.lock).
"""

import dataclasses
import errno
import io
import json
import logging
import os
import shutil
import uuid
import warnings
from typing import Any, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
import tensorstore as ts

from zoo_jax import errors, lock

CONFIG_FILE, MODELS_FILE, METRICS_FILE = "config.json", "models.csv", "metrics.csv"
CHECKPOINTS_DIR, STATE_DIR = "checkpoints", "state"
METRIC_COLUMNS = (
  "train_loss",
  "train_acc",
  "validation_loss",
  "validation_acc",
  "test_loss",
  "test_acc",
)
STATUS_OK, STATUS_DIVERGED = "ok", "diverged"
STATUS_MISSING = "missing"  # imported zoos: the source has no weights for that (model, epoch)
STATUSES = (STATUS_OK, STATUS_DIVERGED, STATUS_MISSING)
# Weights are stored in chunks of at most this many bytes, split along the model axis first, so
# that reading a few models of a big cohort reads a few chunks, not the whole leaf (Zoo.params).
# 64 KiB: a few CNN-s models per chunk of the largest leaf, so an encoder's random minibatches
# (streaming.StreamedFlat) read little beyond the models they draw; Orbax warns below 1 MiB.
CHUNK_BYTES = 1 << 16


def _write_atomic(path: str, write: Any, suffix: str) -> None:
  """Writes through `write(file)` so that readers see the old file or the new one, never half of one.

  The file gets the usual mode (0666 less the umask, like the checkpoint folders); a failed
  write (a full disk) leaves the old file as it was and raises one clear error naming it.
  """
  tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp_{uuid.uuid4().hex}{suffix}")
  try:
    with open(tmp, "x") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as error:
    if os.path.exists(tmp):
      os.remove(tmp)
    then = "Free some space, then run" if error.errno == errno.ENOSPC else "Run"
    raise errors.UsageError(
      f"Cannot write {path}: {error.strerror or error}. The file is as it was and the "
      f"committed epochs are kept; {then} the same command again."
    ) from error


def write_table_atomic(table: pd.DataFrame, path: str) -> None:
  _write_atomic(path, lambda f: table.to_csv(f, index=False), ".csv")


def write_json_atomic(obj: Any, path: str) -> None:
  _write_atomic(path, lambda f: json.dump(obj, f, indent=2, sort_keys=True), ".json")


def claim_workdir(
  workdir: str,
  record: dict,
  tables: dict[str, pd.DataFrame] | None = None,
  *,
  holds: str = "another zoo",
  flag: str = "--workdir",
) -> bool:
  """Makes `workdir` hold `record` (its config.json) and `tables` ({file name: table}), or checks it does.

  The one guard of the commands that write a workdir from a record (encode, sparsify, slice,
  export): a workdir that already holds this record and these tables is this run's (it resumes,
  or it is complete: returns True); one that holds anything else, or a zoo's checkpoints without
  a record, is refused with one line naming `flag`, and nothing in it is touched. Missing pieces
  are written atomically, the tables before the record. (train keeps its own check: it knows
  which config fields may change between runs and migrates older configs; convert's accepts a
  source folder that moved.)
  """
  tables = tables or {}
  config_path = os.path.join(workdir, CONFIG_FILE)
  problem = None
  if os.path.exists(config_path):
    if read_json(config_path) != json.loads(json.dumps(record)):
      problem = f"already holds {holds}"
  elif any(
    os.path.exists(os.path.join(workdir, name))
    for name in (CHECKPOINTS_DIR, MODELS_FILE)
    if name not in tables
  ):
    problem = "holds a zoo"
  for name, table in tables.items():
    path = os.path.join(workdir, name)
    if problem is None and os.path.exists(path) and not pd.read_csv(path).equals(as_stored(table)):
      problem = f"already holds {holds} (its {name} differs)"
  if problem:
    raise ValueError(f"{flag} {workdir!r} {problem}; choose another {flag}.")
  held = os.path.exists(config_path)
  os.makedirs(workdir, exist_ok=True)
  for name, table in tables.items():
    if not os.path.exists(os.path.join(workdir, name)):
      write_table_atomic(table, os.path.join(workdir, name))
  if not held:
    write_json_atomic(record, config_path)
  return held


def _this_process_only() -> ocp.options.MultiprocessingOptions:
  """Orbax options under which this process reads (and writes) alone, with no barrier."""
  if jax.process_count() == 1:
    return ocp.options.MultiprocessingOptions()
  return ocp.options.MultiprocessingOptions(
    primary_host=jax.process_index(), active_processes={jax.process_index()}
  )


def _open_manager(
  directory: str, metadata: dict | None = None, collective: bool = False, **options
) -> ocp.CheckpointManager:
  """`metadata` (JSON) is kept once, when the folder is created: the zoo's config and models table.

  In a multi-process run only a `collective` manager (ZooWriter's: every process saves its
  shards) synchronises the processes; any other is this process's own, so that readers and
  process 0's table checks need no other process.
  """
  if not collective:
    options["multiprocessing_options"] = _this_process_only()
  return ocp.CheckpointManager(
    directory,
    options=ocp.CheckpointManagerOptions(**options),
    metadata=metadata,
    item_handlers=ocp.StandardCheckpointHandler(),
  )


def store_metadata(config: dict, models: pd.DataFrame) -> dict:
  """What checkpoints/ keeps besides the weights, so config.json and models.csv can be rebuilt exactly."""
  return {"config": config, "models_csv": models.to_csv(index=False)}


def _stored(manager: ocp.CheckpointManager) -> dict:
  """The metadata of store_metadata, or {} for zoos written before zoo_jax kept it."""
  try:
    return dict(manager.metadata().custom_metadata or {})
  except Exception:  # pylint: disable=broad-except  # absent or unreadable: nothing stored
    return {}


def stored_metadata(workdir: str) -> dict:
  """The config and models table kept in WORKDIR/checkpoints/ ({} if none)."""
  directory = os.path.join(workdir, CHECKPOINTS_DIR)
  if not os.path.isdir(directory):
    return {}
  with _open_manager(directory, create=False) as manager:
    return _stored(manager)


def committed_epochs(workdir: str) -> list[int]:
  """The epochs whose checkpoint step is committed (Orbax finalised it), ascending."""
  directory = os.path.join(workdir, CHECKPOINTS_DIR)
  if not os.path.isdir(directory):
    return []
  with _open_manager(directory, create=False) as manager:
    return sorted(manager.all_steps())


def read_json(path: str) -> dict:
  """A JSON object file, or one clear error naming it."""
  try:
    with open(path) as f:
      value = json.load(f)
  except FileNotFoundError:
    raise errors.DamagedZoo(f"{path} is missing.") from None
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise errors.DamagedZoo(f"{path} is not valid JSON ({error}).") from None
  if not isinstance(value, dict):
    raise errors.DamagedZoo(f"{path} is not a JSON object.")
  return value


def read_table(path: str, columns: Sequence[str]) -> pd.DataFrame:
  """A CSV table with at least `columns`, or one clear error naming it."""
  try:
    table = pd.read_csv(path)
  except FileNotFoundError:
    raise errors.DamagedZoo(f"{path} is missing.") from None
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
    raise errors.DamagedZoo(
      f"{path} is unreadable ({type(error).__name__}: {' '.join(str(error).split())[:120]})."
    ) from None
  missing = [c for c in columns if c not in table.columns]
  if missing:
    raise errors.DamagedZoo(f"{path} lacks the columns {missing} (truncated or overwritten).")
  return table


def as_stored(table: pd.DataFrame) -> pd.DataFrame:
  """`table` as it reads back from its CSV file: what a table on disk is compared with."""
  return pd.read_csv(io.StringIO(table.to_csv(index=False)))


def restore_numpy(manager: ocp.CheckpointManager, step: int) -> Any:
  """Restores a step as host numpy arrays, whatever devices or mesh it was saved from."""
  try:
    target = jax.tree.map(lambda m: np.empty(m.shape, m.dtype), manager.item_metadata(step))
    return manager.restore(step, args=ocp.args.StandardRestore(target))
  except Exception as error:  # orbax/tensorstore raise many types for damaged files
    raise ValueError(
      f"Checkpoint step {step} in {manager.directory} is unreadable (truncated or corrupted: "
      f"{type(error).__name__}: {str(error)[:200]}). Other epochs are unaffected; delete "
      "that step folder and re-run training to rewrite it."
    ) from error


def _unreadable(manager: ocp.CheckpointManager, step: int, error: Exception) -> ValueError:
  return ValueError(
    f"Checkpoint step {step} in {manager.directory} is unreadable (truncated or corrupted: "
    f"{type(error).__name__}: {str(error)[:200]}). Other epochs are unaffected; delete "
    "that step folder and re-run training to rewrite it."
  )


def item_metadata(manager: ocp.CheckpointManager, step: int) -> Any:
  """The tree of a step's array metadata (shapes, dtypes); a clear error for a damaged step."""
  try:
    return manager.item_metadata(step)
  except Exception as error:  # orbax/tensorstore raise many types for damaged files
    raise _unreadable(manager, step, error) from error


def open_cohorts(
  manager: ocp.CheckpointManager,
  step: int,
  cohorts: Sequence[int],
  part: str = "params",
  context: ts.Context | None = None,
) -> dict[int, Any] | None:
  """The `part` ("params" or "metrics") leaves of `cohorts` at `step`, opened as TensorStore arrays
  (nothing read yet); None for a step in an older, non-OCDBT layout."""
  step_dir = os.path.join(os.path.abspath(str(manager.directory)), str(step), "default")
  with open(os.path.join(step_dir, "_METADATA")) as f:
    stored = json.load(f)
  if not stored.get("use_ocdbt", False):
    return None
  metadata = item_metadata(manager, step)
  context = context or ts.Context()
  driver = "zarr3" if stored.get("use_zarr3") else "zarr"

  def open_leaf(path):
    name = ".".join(str(getattr(k, "key", k)) for k in path)
    spec = {
      "driver": driver,
      "kvstore": {"driver": "ocdbt", "base": f"file://{step_dir}/", "path": name},
    }
    return ts.open(spec, read=True, open=True, context=context)

  futures = {
    c: jax.tree_util.tree_map_with_path(
      lambda p, _: open_leaf((str(c), part) + p), metadata[str(c)][part]
    )
    for c in cohorts
  }
  return {c: jax.tree.map(lambda f: f.result(), tree) for c, tree in futures.items()}


def read_rows(opened: dict[int, Any], rows: dict[int, np.ndarray | None]) -> dict[int, Any]:
  """Reads `rows` (None: all) of every opened leaf; only the chunks holding them are read."""
  futures = {
    c: jax.tree.map(lambda t: (t if r is None else t[np.asarray(r, np.int64)]).read(), opened[c])
    for c, r in rows.items()
  }
  return {c: jax.tree.map(lambda f: np.asarray(f.result()), tree) for c, tree in futures.items()}


def read_cohorts(
  manager: ocp.CheckpointManager,
  step: int,
  rows: dict[int, np.ndarray | None],
  part: str = "params",
) -> dict[int, Any]:
  """The `part` ("params" or "metrics") of the given cohorts at `step`, only `rows` of each leaf.

  rows: cohort -> indices into its model axis (None: all rows). Returns cohort -> pytree of
  numpy arrays [len(rows), ...]. Each leaf is opened as a TensorStore array and only the chunks
  that hold those rows are read, so the memory used is that of the selection, not of the step.
  """
  try:
    opened = open_cohorts(manager, step, list(rows), part)
    if opened is None:  # an older layout: read the step whole
      tree = restore_numpy(manager, step)
      return {
        c: jax.tree.map(lambda x: x if r is None else x[r], tree[str(c)][part])
        for c, r in rows.items()
      }
    return read_rows(opened, rows)
  except Exception as error:  # orbax/tensorstore raise many types for damaged files
    raise ValueError(
      f"Checkpoint step {step} in {manager.directory} is unreadable (truncated or corrupted: "
      f"{type(error).__name__}: {str(error)[:200]}). Other epochs are unaffected; delete "
      "that step folder and re-run training to rewrite it."
    ) from error


METRICS_TABLE_COLUMNS = ("model_id", "epoch", *METRIC_COLUMNS, "gen_gap", "status")
MODELS_TABLE_COLUMNS = ("model_id", "cohort", "cohort_index")


def epoch_rows(models: pd.DataFrame, epoch: int, stored: dict) -> pd.DataFrame:
  """The metrics table rows of one epoch from its checkpoint's metrics ({cohort: {name: [P]}},
  with the `diverged` flags, and `missing` for imported zoos): the table derived from the store."""
  metrics = {int(c): dict(m) for c, m in stored.items()}
  diverged = {c: m.pop("diverged") for c, m in metrics.items()}
  rows = metrics_rows(models, epoch, metrics, diverged)
  if any("missing" in m for m in metrics.values()):
    missing = np.zeros(len(models), bool)
    for c, m in metrics.items():
      ids = models[models["cohort"] == c].sort_values("cohort_index")["model_id"].to_numpy()
      missing[ids] = np.asarray(m["missing"])[
        models.set_index("model_id").loc[ids, "cohort_index"].to_numpy()
      ]
    rows.loc[missing[rows["model_id"].to_numpy()], "status"] = STATUS_MISSING
  return rows


def restore_metrics(manager: ocp.CheckpointManager, step: int) -> dict:
  """The per-cohort metrics of a step ({cohort: {name: [P]}}), without reading its weights."""
  try:
    target = {
      c: {"metrics": jax.tree.map(lambda m: np.empty(m.shape, m.dtype), tree["metrics"])}
      for c, tree in manager.item_metadata(step).items()
    }
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    alone = _this_process_only()  # process 0 checks tables alone in a multi-process run
    with ocp.Checkpointer(
      ocp.PyTreeCheckpointHandler(multiprocessing_options=alone), multiprocessing_options=alone
    ) as checkpointer:  # a partial restore: the metrics only
      tree = checkpointer.restore(
        os.path.join(manager.directory, str(step), "default"),
        args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True),
      )
  except Exception as error:  # orbax/tensorstore raise many types for damaged files
    raise ValueError(
      f"Checkpoint step {step} in {manager.directory} is unreadable (truncated or corrupted: "
      f"{type(error).__name__}: {str(error)[:200]})."
    ) from error
  return {c: dict(v["metrics"]) for c, v in tree.items()}


def metrics_rows(
  models: pd.DataFrame,
  epoch: int,
  metrics: dict[int, dict[str, np.ndarray]],
  diverged: dict[int, np.ndarray],
) -> pd.DataFrame:
  """The metrics table rows of one epoch, from per-cohort [P] arrays (padding dropped)."""
  frames = []
  for cohort, rows in models.groupby("cohort", sort=True):
    index = rows["cohort_index"].to_numpy()
    frame = pd.DataFrame({"model_id": rows["model_id"].to_numpy(), "epoch": epoch})
    for name in METRIC_COLUMNS:
      frame[name] = np.asarray(metrics[cohort][name], np.float64)[index]
    frame["gen_gap"] = frame["train_acc"] - frame["test_acc"]
    for name in sorted(
      set(metrics[cohort]) - set(METRIC_COLUMNS) - {"diverged", "missing"}
    ):  # a twin's sparsity
      frame[name] = np.asarray(metrics[cohort][name], np.float64)[index]
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
  `training_state=False`: a weights-only zoo (a slice), no state/ folder.
  """

  def __init__(self, workdir: str, metadata: dict | None = None, training_state: bool = True):
    """`metadata`: store_metadata(config, models) of a new zoo (kept when checkpoints/ is created)."""
    self.workdir = workdir
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _SmallChunksAreIntended) for f in absl_logger.filters):
      absl_logger.addFilter(_SmallChunksAreIntended())  # CHUNK_BYTES is small on purpose
    self._checkpoints = _open_manager(
      os.path.join(workdir, CHECKPOINTS_DIR), metadata, True, create=True, max_to_keep=None
    )
    # Two states kept, so a corrupted newest one still leaves an epoch to resume from.
    self._state = (
      _open_manager(os.path.join(workdir, STATE_DIR), collective=True, create=True, max_to_keep=2)
      if training_state
      else None
    )

  def restore_state(self, abstract_state: Any) -> tuple[int, Any] | None:
    """(epoch, state) of the newest intact training state, or None for a new run.

    A state step that fails to restore (truncated, corrupted) is reported and deleted,
    with every later weights step, so the run falls back to the previous epoch.
    """
    for step in sorted(self._state.all_steps(), reverse=True):
      if step not in self._checkpoints.all_steps():
        warnings.warn(
          f"{CHECKPOINTS_DIR}/{step} is missing; discarding state/{step} and training epoch {step} "
          "again from the previous epoch's state to rewrite it."
        )
        self._state.delete(step)
        continue
      try:
        state = self._state.restore(step, args=ocp.args.StandardRestore(abstract_state))
      except Exception as error:  # orbax/tensorstore raise many types for damaged files
        warnings.warn(
          f"Training state of epoch {step} in {os.path.join(self.workdir, STATE_DIR)} is "
          f"unreadable ({type(error).__name__}: {str(error)[:200]}); falling back to the "
          "previous complete epoch."
        )
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
    """The per-cohort metrics stored in the checkpoint of `epoch`."""
    if epoch not in self._checkpoints.all_steps():
      raise errors.DamagedZoo(
        f"{os.path.join(self.workdir, CHECKPOINTS_DIR, str(epoch))} is missing while later epochs are "
        "committed: the weights of a middle epoch cannot be rebuilt without training the zoo again. Move "
        "this workdir away and run the command again (or restore that folder)."
      )
    return {int(c): v for c, v in restore_metrics(self._checkpoints, epoch).items()}

  def steps(self) -> list[int]:
    """The committed weight steps (epochs)."""
    return sorted(self._checkpoints.all_steps())

  def save_weights(
    self,
    epoch: int,
    params: dict[int, Any],
    metrics: dict[int, dict],
    model_state: dict[int, Any] | None = None,
  ) -> None:
    """Commits the weights and metrics of every cohort at `epoch` (a weights-only step).

    model_state: per cohort, the model's mutable collections ({"batch_stats": [P, ...]}) or None,
      stored beside "params" (params-only zoos are written exactly as before).
    """
    tree = {
      str(c): {"params": params[c], "metrics": metrics[c], **((model_state or {}).get(c) or {})}
      for c in params
    }
    chunked = jax.tree.map(
      lambda _: ocp.SaveArgs(chunk_byte_size=CHUNK_BYTES, shard_axes=(0,)), tree
    )
    self._checkpoints.save(epoch, args=ocp.args.StandardSave(tree, save_args=chunked))
    self._checkpoints.wait_until_finished()

  def save(
    self,
    epoch: int,
    params: dict[int, Any],
    metrics: dict[int, dict],
    state: Any,
    model_state: dict[int, Any] | None = None,
  ) -> None:
    """Commits epoch `epoch`'s weights and metrics of every cohort, then starts saving its training state.

    The state is written in the background while the next epoch trains (it matters only for
    resuming, and a state step without its weights step is discarded on restore); the next
    save, or close, waits for it. Returns once the weights step is committed.
    """
    self._state.wait_until_finished()  # the previous epoch's state
    self.save_weights(epoch, params, metrics, model_state)
    self._state.save(epoch, args=ocp.args.StandardSave(state))

  def close(self) -> None:
    self._checkpoints.close()
    if self._state is not None:
      self._state.close()


def _checked_models(table: pd.DataFrame, path: str, stored: dict) -> pd.DataFrame:
  """models.csv as read, checked against the copy in checkpoints/ (or for its shape, in older zoos)."""
  if "models_csv" in stored:
    expected = as_stored(pd.read_csv(io.StringIO(stored["models_csv"])))
    if not table.equals(expected):
      raise errors.DamagedZoo(
        f"{path} differs from the models table kept in checkpoints/ ({len(table)} rows "
        f"against {len(expected)}; truncated or edited)."
      )
  elif not np.array_equal(table["model_id"].to_numpy(), np.arange(len(table))):
    raise errors.DamagedZoo(f"{path} is damaged: its model_id column is not 0..{len(table) - 1}.")
  return table


class Zoo:
  """A zoo on disk, read with no training code: tables as DataFrames, weights as arrays.

  Reads zoos still being written: `epochs` lists only committed epochs, and the metrics
  are cut to them. The tables always agree with checkpoints/: rows a table lacks (a run
  killed between an epoch's weights and its rows, a truncated or lost file) are derived from
  the checkpoints, with a warning naming the file unless a writer is at work; what cannot be
  derived (rows of epochs whose weights are gone, a lost table of an older zoo) is an
  errors.DamagedZoo naming the file.
  """

  def __init__(self, workdir: str):
    checkpoints = os.path.join(workdir, CHECKPOINTS_DIR)
    if not os.path.exists(os.path.join(workdir, MODELS_FILE)) and not os.path.isdir(checkpoints):
      raise FileNotFoundError(
        f"{workdir!r} is not a zoo: {MODELS_FILE} is missing. "
        "Create one with: python -m zoo_jax.train --config=... --workdir=DIR"
      )
    self.workdir = workdir
    # Not read_only (that mode cannot restore without handlers); this object never saves or deletes.
    self._manager = _open_manager(checkpoints, create=False)
    writing = lock.holder(workdir) is not None
    stored = _stored(self._manager)
    self.config = self._read_or_stored(CONFIG_FILE, read_json, stored.get("config"))
    self.models = self._read_or_stored(
      MODELS_FILE,
      lambda p: _checked_models(read_table(p, MODELS_TABLE_COLUMNS), p, stored),
      as_stored(pd.read_csv(io.StringIO(stored["models_csv"]))) if "models_csv" in stored else None,
    )
    self.epochs = sorted(self._manager.all_steps())
    self.metrics = self._metrics(writing)

  def _read_or_stored(self, name: str, read: Any, stored: Any) -> Any:
    path = os.path.join(self.workdir, name)
    try:
      return read(path)
    except errors.DamagedZoo as error:
      if stored is None:
        raise errors.DamagedZoo(
          f"{error} checkpoints/ keeps no copy (zoo written by an older zoo_jax): run the "
          "command that wrote this zoo again (it rewrites the file), or restore it."
        ) from None
      warnings.warn(
        f"{error} Using the copy kept in checkpoints/ (exact); `python -m zoo_jax.zoo check "
        f"{self.workdir} --repair` rewrites the file."
      )
      return stored

  def _metrics(self, writing: bool) -> pd.DataFrame:
    """metrics.csv cut to the committed epochs, with rows it lacks derived from the checkpoints."""
    path = os.path.join(self.workdir, METRICS_FILE)
    ids = set(self.models["model_id"])
    try:
      table = read_table(path, METRICS_TABLE_COLUMNS)
      # Extra metric columns (a sparsified twin's sparsity) are kept, before the status column.
      extra = [c for c in table.columns if c not in METRICS_TABLE_COLUMNS]
      table = table[list(METRICS_TABLE_COLUMNS[:-1]) + extra + ["status"]]
      problem = ""
    except errors.DamagedZoo as error:
      table, problem = pd.DataFrame(columns=list(METRICS_TABLE_COLUMNS)), str(error)
    ahead = sorted(set(table["epoch"].dropna()) - set(self.epochs))
    directory = str(self._manager.directory)
    pending = {
      int(n.split(".")[0])
      for n in (os.listdir(directory) if os.path.isdir(directory) else [])
      if ".orbax-checkpoint-tmp" in n and n.split(".")[0].isdigit()
    }  # steps being written
    gone = [int(e) for e in ahead if not writing and e not in pending]
    if gone:
      raise errors.DamagedZoo(
        f"{path} has rows of epochs {gone} whose weights are missing ({os.path.join(self._manager.directory, str(gone[0]))}"
        f"). Run the train command of this zoo again (it trains them again), or `python -m zoo_jax.zoo check "
        f"{self.workdir} --repair` (drops those rows)."
      )
    table = table[table["epoch"].isin(self.epochs)]
    whole = (
      table.groupby("epoch")["model_id"].agg(lambda m: len(m) == len(ids) and set(m) == ids)
      if len(table)
      else pd.Series(dtype=bool)
    )
    valid = table["status"].isin(STATUSES).groupby(table["epoch"]).all() if len(table) else whole
    lacking = [e for e in self.epochs if not (whole.get(e, False) and valid.get(e, False))]
    if not lacking:
      return table.reset_index(drop=True)
    if not (writing and lacking == self.epochs[-1:]) and not problem:
      problem = f"{path} lacks the rows of epochs {lacking} (truncated, or its writer stopped before writing them)."
    if problem:
      warnings.warn(
        f"{problem} Derived the rows of epochs {lacking} from the checkpoints (exact); "
        f"`python -m zoo_jax.zoo check {self.workdir} --repair` rewrites the file."
      )
    derived = [
      as_stored(epoch_rows(self.models, e, restore_metrics(self._manager, e))) for e in lacking
    ]
    kept = table[~table["epoch"].isin(lacking)]
    table = pd.concat([kept, *derived] if len(kept) else derived)
    return table.sort_values(["epoch", "model_id"], kind="stable").reset_index(drop=True)

  def __repr__(self) -> str:
    return f"Zoo({self.workdir!r}: {len(self.models)} models, epochs {self.epochs[:1]}..{self.epochs[-1:]})"

  def _epoch(self, epoch: int) -> int:
    if not self.epochs:
      raise ValueError(f"Zoo {self.workdir!r} has no committed epoch yet.")
    resolved = self.epochs[epoch] if epoch < 0 and -len(self.epochs) <= epoch else epoch
    if resolved not in self.epochs:
      raise ValueError(
        f"Epoch {epoch} is not in zoo {self.workdir!r}; available epochs: {self.epochs}."
      )
    return resolved

  def _model_ids(self, model_ids: Sequence[int] | None) -> np.ndarray:
    if model_ids is None:
      return self.models["model_id"].to_numpy()
    ids = np.atleast_1d(np.asarray(model_ids, dtype=np.int64))
    unknown = np.setdiff1d(ids, self.models["model_id"].to_numpy())
    if unknown.size:
      raise ValueError(
        f"Unknown model ids {unknown[:10].tolist()} in zoo {self.workdir!r} "
        f"(ids are 0..{len(self.models) - 1})."
      )
    return ids

  def params(self, model_ids: Sequence[int] | None = None, epoch: int = -1) -> Any:
    """Weights of the selected models at `epoch` (negative counts back from the newest).

    Returns a params pytree whose leaves have a leading model axis, in `model_ids` order.
    """
    return self.variables(model_ids, epoch, collections=("params",))["params"]

  def variables(
    self,
    model_ids: Sequence[int] | None = None,
    epoch: int = -1,
    collections: Sequence[str] | None = None,
  ) -> dict[str, Any]:
    """The Flax variables of the selected models at `epoch`: {"params": ...} plus the stored mutable
    collections (e.g. {"batch_stats": ...}, BatchNorm's running statistics), leaves [models, ...].

    `model.apply(jax.tree.map(lambda a: a[i], zoo.variables()), x)` runs model i as trained.
    """
    ids, step = self._model_ids(model_ids), self._epoch(epoch)
    rows = self.models.set_index("model_id").loc[ids]
    metadata = item_metadata(self._manager, step)
    cohorts = sorted({int(c) for c in rows["cohort"]})
    shapes = {
      str(jax.tree.structure(metadata[str(c)]["params"]))
      + str([x.shape[1:] for x in jax.tree.leaves(metadata[str(c)]["params"])])
      for c in cohorts
    }
    if len(shapes) > 1:
      raise ValueError(
        "The selected models have different architectures; select models of one "
        "architecture (e.g. zoo.select(arch=...))."
      )
    if collections is None:
      collections = sorted(
        {k for c in cohorts for k in metadata[str(c)] if k != "metrics"},
        key=lambda k: k != "params",
      )
    return {name: self._gather(step, rows, name) for name in collections}

  def _gather(self, step: int, rows: pd.DataFrame, collection: str) -> Any:
    # Only the selected cohorts' selected rows are read (read_cohorts), each once.
    cohort, index = rows["cohort"].to_numpy(), rows["cohort_index"].to_numpy()
    wanted = {int(c): np.unique(index[cohort == c]) for c in np.unique(cohort)}
    per_cohort = read_cohorts(self._manager, step, wanted, collection)
    order = sorted(wanted)
    offset = dict(zip(order, np.cumsum([0] + [len(wanted[c]) for c in order])))
    position = np.array(
      [offset[c] + np.searchsorted(wanted[c], i) for c, i in zip(cohort, index)], np.int64
    )
    return jax.tree.map(
      lambda *leaves: np.concatenate(leaves)[position], *[per_cohort[c] for c in order]
    )

  def flat(self, model_ids: Sequence[int] | None = None, epoch: int = -1) -> np.ndarray:
    """Weights of the selected models as a [models, n_params] array (leaves in pytree order)."""
    params = self.params(model_ids, epoch)
    leaves = jax.tree.leaves(params)
    return np.concatenate([x.reshape(x.shape[0], -1) for x in leaves], axis=1)

  def select(
    self, status: str | None = None, min_test_acc: float | None = None, epoch: int = -1, **hparams
  ) -> np.ndarray:
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
  }
  rows = {int(c): np.sort(source_index[source_cohort == c]) for c in np.unique(source_cohort)}
  new_cohort = {int(c): int(n) for c, n in zip(source_cohort, cohort)}
  metrics = source.metrics[
    source.metrics["model_id"].isin(ids) & source.metrics["epoch"].isin(chosen)
  ].copy()
  metrics["model_id"] = np.searchsorted(ids, metrics["model_id"].to_numpy())
  metrics = metrics.sort_values(["epoch", "model_id"], kind="stable").reset_index(drop=True)
  os.makedirs(dst, exist_ok=True)
  with lock.workdir_lock(dst):  # one writer per zoo, as for training
    claim_workdir(dst, record, holds="another zoo or another selection", flag="--dst")
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

  source = Zoo(src)
  ids, chosen = _selection(source, model_ids, epochs)
  claim_workdir(
    dst,
    {
      "format": EXPORT_FORMAT,
      "exported_from": os.path.abspath(src),
      "model_ids": ids.tolist(),
      "epochs": chosen,
      "source_config": source.config,
    },
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


@dataclasses.dataclass
class Report:
  """What `check` found: one line per part of the zoo, the problems left, the files rewritten."""

  workdir: str
  lines: list[str] = dataclasses.field(default_factory=list)
  problems: list[str] = dataclasses.field(default_factory=list)
  repaired: list[str] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    return not self.problems

  def __str__(self) -> str:
    out = [f"zoo check {self.workdir}", *(f"  {line}" for line in self.lines)]
    out += [f"repaired: {r}" for r in self.repaired]
    out += [f"PROBLEM: {p}" for p in self.problems]
    out.append("result: ok" if self.ok else f"result: {len(self.problems)} problem(s)")
    return "\n".join(out)


def check(workdir: str, repair: bool = False) -> Report:
  """Verifies a zoo against its checkpoints: every step's arrays open and are finite where the
  status is ok, config.json and models.csv equal the copies in checkpoints/, metrics.csv equals
  the rows derived from the steps. `repair` rewrites, under the writer lock, the files that can
  be rebuilt exactly (from checkpoints/ alone)."""
  if not os.path.isdir(os.path.join(workdir, CHECKPOINTS_DIR)):
    raise errors.UsageError(f"{workdir!r} is not a zoo: it has no {CHECKPOINTS_DIR}/ folder.")
  if repair:
    with lock.workdir_lock(workdir):
      return _check(workdir, True)
  return _check(workdir, False)


def _check(workdir: str, repair: bool) -> Report:
  report = Report(workdir)
  holder = lock.holder(workdir)
  if holder and not repair:
    report.lines.append(
      f"writer        pid {holder.get('pid')} on {holder.get('host')!r} is writing this zoo "
      "now; newer epochs may be in flight"
    )
  with _open_manager(os.path.join(workdir, CHECKPOINTS_DIR), create=False) as manager:
    stored = _stored(manager)
    if not stored:
      report.lines.append(
        "metadata      checkpoints/ keeps no config or models table (older zoo_jax): "
        "config.json and models.csv are checked for shape only"
      )

    def kept(name: str, read: Any, expected: Any, write: Any, describe: str) -> Any:
      path = os.path.join(workdir, name)
      try:
        value = read(path)
        if expected is None or (
          value.equals(expected) if hasattr(value, "equals") else value == expected
        ):
          report.lines.append(f"{name:<13} {describe.format(value=value)}: ok")
          return value
        problem = f"{path} differs from the copy kept in checkpoints/."
      except errors.DamagedZoo as error:
        problem = str(error)
      if expected is None:
        report.problems.append(
          f"{problem} It cannot be rebuilt from checkpoints/ (older zoo): restore it, or run "
          "the command that wrote the zoo again."
        )
        return None
      if repair:
        write(expected, path)
        report.repaired.append(f"{path} rewritten from checkpoints/ ({problem})")
      else:
        report.problems.append(f"{problem} --repair rewrites it from checkpoints/ (exact).")
      return expected

    config = kept(
      CONFIG_FILE, read_json, stored.get("config"), write_json_atomic, "resolved config"
    )
    expected_models = (
      as_stored(pd.read_csv(io.StringIO(stored["models_csv"]))) if "models_csv" in stored else None
    )
    models = kept(
      MODELS_FILE,
      lambda p: _checked_models(read_table(p, MODELS_TABLE_COLUMNS), p, {}),
      expected_models,
      write_table_atomic,
      "{value.shape[0]} models",
    )
    if models is None:
      return report

    epochs = sorted(manager.all_steps())
    derived, unreadable = [], []
    for epoch in epochs:
      step = os.path.join(workdir, CHECKPOINTS_DIR, str(epoch))
      try:
        tree = restore_numpy(manager, epoch)
      except ValueError as error:
        unreadable.append(epoch)
        report.problems.append(
          f"{step} is unreadable ({str(error.__cause__ or error)[:160]}). Delete that folder "
          "and run the train command again: it trains the newest epoch again from "
          "state/; an older one needs the zoo trained again."
        )
        continue
      rows = epoch_rows(models, epoch, {c: v["metrics"] for c, v in tree.items()})
      status = rows.set_index("model_id")["status"]
      for cohort, group in models.groupby("cohort"):
        params = tree.get(str(cohort), {}).get("params")
        if params is None:
          report.problems.append(f"{step} has no weights for cohort {cohort} of {MODELS_FILE}.")
          continue
        leaves = [np.asarray(x) for x in jax.tree.leaves(params)]
        index = group["cohort_index"].to_numpy()
        if any(len(x) <= index.max() for x in leaves):
          report.problems.append(
            f"{step} holds fewer models of cohort {cohort} than {MODELS_FILE} lists."
          )
          continue
        finite = np.all(
          [np.isfinite(x[index].reshape(len(index), -1)).all(axis=1) for x in leaves], axis=0
        )
        bad = group["model_id"].to_numpy()[
          ~finite & (status.loc[group["model_id"]] == STATUS_OK).to_numpy()
        ]
        if bad.size:
          report.problems.append(
            f"{step} has non-finite weights for models {bad[:10].tolist()} whose status is ok."
          )
      derived.append(rows)
    gaps = [] if not epochs else sorted(set(range(epochs[0], epochs[-1] + 1)) - set(epochs))
    if gaps and "population" in (config or {}):  # a trained zoo has every epoch
      report.problems.append(
        f"{os.path.join(workdir, CHECKPOINTS_DIR)} lacks the steps of epochs {gaps}; middle "
        "epochs cannot be rebuilt without training the zoo again."
      )
    span = (
      f"epochs {epochs[0]}..{epochs[-1]} ({len(epochs)} steps)" if epochs else "no committed epoch"
    )
    report.lines.append(
      f"{CHECKPOINTS_DIR + '/':<13} {span}; {len(epochs) - len(unreadable)} open, finite where "
      "the status is ok"
    )
    if (
      isinstance((config or {}).get("num_epochs"), int)
      and epochs
      and epochs[-1] < config["num_epochs"]
    ):
      report.lines.append(
        f"{'':<13} unfinished: config.num_epochs is {config['num_epochs']}; the train command "
        "continues it"
      )

    path = os.path.join(workdir, METRICS_FILE)
    expected = (
      as_stored(pd.concat(derived, ignore_index=True)[list(METRICS_TABLE_COLUMNS)])
      if derived
      else pd.DataFrame(columns=list(METRICS_TABLE_COLUMNS))
    )
    try:
      table = read_table(path, METRICS_TABLE_COLUMNS)[list(METRICS_TABLE_COLUMNS)]
      if unreadable:
        table = table[~table["epoch"].isin(unreadable)].reset_index(drop=True)
      problem = (
        None
        if table.equals(expected)
        else f"{path} disagrees with the checkpoints: {_difference(table, expected)}."
      )
    except errors.DamagedZoo as error:
      problem = str(error)
    if problem is None:
      report.lines.append(
        f"{METRICS_FILE:<13} {len(expected)} rows, equal to the metrics in the checkpoints: ok"
      )
    elif repair and not unreadable:
      write_table_atomic(expected, path)
      report.repaired.append(f"{path} rewritten from the checkpoints ({problem})")
    else:
      why = (
        "--repair rewrites it from the checkpoints (exact)."
        if not unreadable
        else ("it is rebuilt once every step is readable.")
      )
      report.problems.append(f"{problem} {why}")

    state_dir = os.path.join(workdir, STATE_DIR)
    if os.path.isdir(state_dir):
      with _open_manager(state_dir, create=False) as state:
        report.lines.append(
          f"{STATE_DIR + '/':<13} training state of epochs {sorted(state.all_steps())}"
        )
  return report


def _difference(table: pd.DataFrame, expected: pd.DataFrame) -> str:
  """The first way two metrics tables differ, in words."""
  have, want = set(table["epoch"]), set(expected["epoch"])
  if have != want:
    parts = [f"epochs {sorted(want - have)} lack rows"] if want - have else []
    parts += (
      [f"epochs {sorted(have - want)} have rows but no checkpoint step"] if have - want else []
    )
    return ", ".join(parts)
  if len(table) != len(expected):
    return f"{len(table)} rows, the checkpoints give {len(expected)}"
  for column in table.columns:
    a, b = table[column].to_numpy(), expected[column].to_numpy()
    same = (a == b) | (pd.isna(a) & pd.isna(b))
    if not same.all():
      i = int(np.argmin(same))
      return (
        f"{column} of model {expected['model_id'].iloc[i]} at epoch {expected['epoch'].iloc[i]} is "
        f"{a[i]!r}, the checkpoint says {b[i]!r}"
      )
  return "dtypes differ"


def clear(workdir: str) -> None:
  """Removes a zoo's files (used by overwrite=True); leaves unrelated files alone."""
  for name in (CONFIG_FILE, MODELS_FILE, METRICS_FILE):
    path = os.path.join(workdir, name)
    if os.path.exists(path):
      os.remove(path)
  for name in (CHECKPOINTS_DIR, STATE_DIR):
    shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)


def _check_command(args: list[str]) -> int:
  from absl import flags

  if len(args) != 1:
    raise errors.UsageError(
      f"usage: python -m zoo_jax.zoo check DIR [--repair]; got arguments {args}."
    )
  report = check(args[0], repair=flags.FLAGS.repair)
  print(report)
  return 0 if report.ok else 1


def _copy_args(name: str, args: list[str]) -> tuple:
  """(src, dst, model ids or None, epochs or None) of `slice` / `export` from their flags."""
  import contextlib
  from absl import flags

  if args:
    raise errors.UsageError(
      f"usage: python -m zoo_jax.zoo {name} --src=ZOO --dst=OUT [--epochs=...] "
      f"[--select=...]; got arguments {args}."
    )
  for flag in ("src", "dst"):
    if not flags.FLAGS[flag].value:
      raise errors.UsageError(f"--{flag} is required for `{name}`.")
  src, model_ids, selection = flags.FLAGS.src, None, parse_select(flags.FLAGS.select)
  epochs = parse_epochs(flags.FLAGS.epochs)
  if selection:
    with contextlib.closing(Zoo(src)) as source:
      model_ids = source.select(**selection)
  return src, flags.FLAGS.dst, model_ids, epochs


def _slice_command(args: list[str]) -> int:
  sliced = slice_zoo(*_copy_args("slice", args))
  print(f"{sliced}  (zoo_jax.zoo.Zoo(path) reads it)")
  return 0


def _export_command(args: list[str]) -> int:
  src, dst, model_ids, epochs = _copy_args("export", args)
  paths = export(src, dst, model_ids, epochs)
  print(f"exported {len(paths)} epoch file(s) and the tables to {dst}")
  return 0


# Subcommands of `python -m zoo_jax.zoo NAME ARGS... [--flags]`: name -> function(args) -> exit code.
COMMANDS = {"check": _check_command, "slice": _slice_command, "export": _export_command}

if __name__ == "__main__":
  from absl import flags
  from zoo_jax import cli
  from zoo_jax import zoo as _zoo  # the importable module, not this __main__ copy

  flags.DEFINE_bool(
    "repair", False, "check: rewrite what can be rebuilt exactly from checkpoints/."
  )
  flags.DEFINE_string("src", None, "slice, export: the zoo to read.")
  flags.DEFINE_string(
    "dst",
    None,
    "slice, export: where the new zoo or the exported files go (empty, or the "
    "same slice or export to resume).",
  )
  flags.DEFINE_string(
    "epochs",
    None,
    "slice, export: comma-separated epochs, negative from the newest (e.g. 0,5,-1); default: all.",
  )
  flags.DEFINE_string(
    "select",
    None,
    "slice, export: models, as FIELD=VALUE[|VALUE] pairs separated by commas, "
    "as Zoo.select takes them (activation=tanh,status=ok,min_test_acc=0.5,model_id=0|3); "
    "default: all.",
  )
  cli.run_subcommands(_zoo.COMMANDS, "python -m zoo_jax.zoo")
