"""Zoo: a zoo on disk read back with no training code: tables as DataFrames, weights as arrays."""

import os
import warnings
from typing import Any, Sequence

import jax
import numpy as np
import pandas as pd

from zoo_jax import errors
from zoo_jax.zoo.files import (
  CHECKPOINTS_DIR,
  CONFIG_FILE,
  METRICS_FILE,
  MODELS_FILE,
  STATUSES,
  read_json,
  read_table,
)
from zoo_jax.zoo.store import item_metadata, open_manager, read_cohorts, read_stored
from zoo_jax.zoo.tables import (
  METRICS_TABLE_COLUMNS,
  MODELS_TABLE_COLUMNS,
  checked_models,
  stored_models,
  derive_metrics,
)
from zoo_jax.zoo import lock


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
    _check_not_results(workdir)
    checkpoints = os.path.join(workdir, CHECKPOINTS_DIR)
    if not os.path.exists(os.path.join(workdir, MODELS_FILE)) and not os.path.isdir(checkpoints):
      raise FileNotFoundError(
        f"{workdir!r} is not a zoo: {MODELS_FILE} is missing. "
        "Create one with: python -m zoo_jax.train --config=... --workdir=DIR"
      )
    self.workdir = workdir
    # Not read_only (that mode cannot restore without handlers); this object never saves or deletes.
    self._manager = open_manager(checkpoints, create=False)
    writing = lock.holder(workdir) is not None
    stored = read_stored(self._manager)
    self.config = self._read_or_stored(CONFIG_FILE, read_json, stored.get("config"))
    self.models = self._read_or_stored(
      MODELS_FILE,
      lambda p: checked_models(read_table(p, MODELS_TABLE_COLUMNS), p, stored),
      stored_models(stored),
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
    derived = [derive_metrics(self._manager, self.models, lacking)]
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


def _check_not_results(workdir: str) -> None:
  """One clear error when `workdir` holds a command's results instead of a zoo (an encode workdir)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(os.path.join(workdir, MODELS_FILE)) or not os.path.exists(path):
    return
  try:
    record = read_json(path)
  except errors.DamagedZoo:
    return
  if "zoos" in record and "config" in record:
    raise errors.UsageError(
      f"{workdir!r} is not a zoo: it holds the results of zoo_jax.encode on the zoos "
      f"{record['zoos']}; pass one of those, or a workdir of zoo_jax.train."
    )
