"""The zoo's tables (models.csv, metrics.csv) and the one place that derives them from the
checkpoints, compares them with what is on disk and rebuilds them: the reader, `check` and the
train command all go through here."""

import io
import os
from typing import Sequence

import numpy as np
import pandas as pd

from zoo_jax import errors
from zoo_jax.zoo.store import open_manager, restore_metrics
from zoo_jax.zoo.files import (
  CHECKPOINTS_DIR,
  METRIC_COLUMNS,
  METRICS_FILE,
  MODELS_FILE,
  STATUS_DIVERGED,
  STATUS_MISSING,
  STATUS_OK,
  as_stored,
  read_table,
  write_table_atomic,
)


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


def stored_models(stored: dict) -> pd.DataFrame | None:
  """The models table kept in checkpoints/ (store.store_metadata), as read from CSV; None for older zoos."""
  return (
    as_stored(pd.read_csv(io.StringIO(stored["models_csv"]))) if "models_csv" in stored else None
  )


def checked_models(table: pd.DataFrame, path: str, stored: dict) -> pd.DataFrame:
  """models.csv as read, checked against the copy in checkpoints/ (or for its shape, in older zoos)."""
  if "models_csv" in stored:
    expected = stored_models(stored)
    if not table.equals(expected):
      raise errors.DamagedZoo(
        f"{path} differs from the models table kept in checkpoints/ ({len(table)} rows "
        f"against {len(expected)}; truncated or edited)."
      )
  elif not np.array_equal(table["model_id"].to_numpy(), np.arange(len(table))):
    raise errors.DamagedZoo(f"{path} is damaged: its model_id column is not 0..{len(table) - 1}.")
  return table


def difference(table: pd.DataFrame, expected: pd.DataFrame) -> str:
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


def derive_metrics(manager, models: pd.DataFrame, epochs: Sequence[int]) -> pd.DataFrame:
  """The metrics table rows of `epochs`, derived from their checkpoint steps (exact: as stored)."""
  if not len(epochs):
    return pd.DataFrame(columns=list(METRICS_TABLE_COLUMNS))
  return as_stored(
    pd.concat(
      [epoch_rows(models, e, restore_metrics(manager, e)) for e in epochs], ignore_index=True
    )
  )


def table_problem(
  path: str, columns: Sequence[str], expected: pd.DataFrame, differs: str
) -> str | None:
  """None if the table at `path` equals `expected` (as written and read back); else why not: `differs`,
  or what is damaged."""
  try:
    return None if read_table(path, columns).equals(as_stored(expected)) else differs
  except errors.DamagedZoo as error:
    return str(error)


def repair_models(workdir: str, models: pd.DataFrame, committed: bool) -> bool:
  """Writes models.csv if it is missing or differs from `models` (the table of the config that made the
  zoo, which the caller has checked); says so when it rebuilds the file of a zoo with `committed` epochs.
  True if it rewrote an existing zoo's file."""
  path = os.path.join(workdir, MODELS_FILE)
  problem = table_problem(
    path, MODELS_TABLE_COLUMNS, models, "it differed from the models of this config"
  )
  if problem is None:
    return False
  write_table_atomic(models, path)
  if committed:
    print(f"Rebuilt {path} ({problem})")
  return committed


def repair_metrics(workdir: str, models: pd.DataFrame, epochs: Sequence[int]) -> bool:
  """Rewrites metrics.csv if it differs from the rows the checkpoints of `epochs` hold; True if it did."""
  path = os.path.join(workdir, METRICS_FILE)
  with open_manager(os.path.join(workdir, CHECKPOINTS_DIR), create=False) as manager:
    try:
      table = derive_metrics(manager, models, epochs)
    except ValueError as error:
      raise errors.DamagedZoo(
        f"{error} Delete that step folder and run this command again: it trains the newest "
        "epoch again from state/; an older one needs the zoo trained again."
      ) from None
  problem = table_problem(path, METRICS_TABLE_COLUMNS, table, "it disagreed with the checkpoints")
  if problem is None:
    return False
  write_table_atomic(table, path)
  print(f"Rebuilt {path} from the checkpoints ({problem})")
  return True
