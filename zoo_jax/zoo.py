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
weights are missing. A dead run resumes from the newest intact `state/` step.
"""

import json
import os
import shutil
import tempfile
from typing import Any, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
import warnings

CONFIG_FILE, MODELS_FILE, METRICS_FILE = "config.json", "models.csv", "metrics.csv"
CHECKPOINTS_DIR, STATE_DIR = "checkpoints", "state"
METRIC_COLUMNS = ("train_loss", "train_acc", "validation_loss", "validation_acc", "test_loss", "test_acc")
STATUS_OK, STATUS_DIVERGED = "ok", "diverged"
STATUS_MISSING = "missing"  # imported zoos: the source has no weights for that (model, epoch)
STATUSES = (STATUS_OK, STATUS_DIVERGED, STATUS_MISSING)


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
    for name in sorted(set(metrics[cohort]) - set(METRIC_COLUMNS) - {"diverged"}):  # e.g. a twin's sparsity
      frame[name] = np.asarray(metrics[cohort][name], np.float64)[index]
    frame["status"] = np.where(np.asarray(diverged[cohort])[index], STATUS_DIVERGED, STATUS_OK)
    frames.append(frame)
  return pd.concat(frames).sort_values("model_id", kind="stable").reset_index(drop=True)


class ZooWriter:
  """Writes a zoo epoch by epoch; every epoch is committed whole or not at all."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self._checkpoints = _open_manager(os.path.join(workdir, CHECKPOINTS_DIR), create=True, max_to_keep=None)
    # Two states kept, so a corrupted newest one still leaves an epoch to resume from.
    self._state = _open_manager(os.path.join(workdir, STATE_DIR), create=True, max_to_keep=2)

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
    """The per-cohort metrics stored in the checkpoint of `epoch`."""
    tree = restore_numpy(self._checkpoints, epoch)
    return {int(c): dict(v["metrics"]) for c, v in tree.items()}

  def save(self, epoch: int, params: dict[int, Any], metrics: dict[int, dict], state: Any,
           model_state: dict[int, Any] | None = None) -> None:
    """Commits epoch `epoch`: weights and metrics of every cohort, then the training state.

    model_state: per cohort, the model's mutable collections ({"batch_stats": [P, ...]}) or None,
      stored beside "params" (params-only zoos are written exactly as before).
    """
    tree = {str(c): {"params": params[c], "metrics": metrics[c], **((model_state or {}).get(c) or {})}
            for c in params}
    self._checkpoints.save(epoch, args=ocp.args.StandardSave(tree))
    self._checkpoints.wait_until_finished()
    self._state.save(epoch, args=ocp.args.StandardSave(state))
    self._state.wait_until_finished()

  def close(self) -> None:
    self._checkpoints.close()
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
    return self.variables(model_ids, epoch, collections=("params",))["params"]

  def variables(self, model_ids: Sequence[int] | None = None, epoch: int = -1,
                collections: Sequence[str] | None = None) -> dict[str, Any]:
    """The Flax variables of the selected models at `epoch`: {"params": ...} plus the stored mutable
    collections (e.g. {"batch_stats": ...}, BatchNorm's running statistics), leaves [models, ...].

    `model.apply(jax.tree.map(lambda a: a[i], zoo.variables()), x)` runs model i as trained.
    """
    ids, step = self._model_ids(model_ids), self._epoch(epoch)
    tree = restore_numpy(self._manager, step)
    rows = self.models.set_index("model_id").loc[ids]
    if collections is None:
      collections = sorted({k for v in tree.values() for k in v if k != "metrics"}, key=lambda k: k != "params")
    return {name: self._gather(tree, rows, name) for name in collections}

  def _gather(self, tree: dict, rows: pd.DataFrame, collection: str) -> Any:
    per_cohort = {int(c): v[collection] for c, v in tree.items()}
    shapes = {str(jax.tree.structure(p)) + str([x.shape[1:] for x in jax.tree.leaves(p)])
              for c, p in per_cohort.items() if c in set(rows["cohort"])}
    if len(shapes) > 1:
      raise ValueError("The selected models have different architectures; select models of one "
                       "architecture (e.g. zoo.select(arch=...)).")
    def gather(*leaves_by_cohort):
      by_cohort = dict(zip(per_cohort, leaves_by_cohort))
      return np.stack([by_cohort[c][i] for c, i in zip(rows["cohort"], rows["cohort_index"])])
    return jax.tree.map(gather, *per_cohort.values())

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


def clear(workdir: str) -> None:
  """Removes a zoo's files (used by overwrite=True); leaves unrelated files alone."""
  for name in (CONFIG_FILE, MODELS_FILE, METRICS_FILE):
    path = os.path.join(workdir, name)
    if os.path.exists(path):
      os.remove(path)
  for name in (CHECKPOINTS_DIR, STATE_DIR):
    shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
