"""Files of a zoo workdir: their names, atomic writes and checked reads (the claim of a workdir: guard.py)."""

import errno
import io
import json
import os
import shutil
import uuid
from typing import Any, Sequence

import pandas as pd

from zoo_jax import errors


CONFIG_FILE, MODELS_FILE, METRICS_FILE = "config.json", "models.csv", "metrics.csv"


CHECKPOINTS_DIR, STATE_DIR = "checkpoints", "state"


# What a zoo run writes into its workdir (clear removes them).
ZOO_FILES = (CONFIG_FILE, MODELS_FILE, METRICS_FILE, CHECKPOINTS_DIR, STATE_DIR)


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


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
  """The dotted names of the fields where two JSON records differ, sorted: what a workdir guard reports."""
  if isinstance(a, dict) and isinstance(b, dict):
    return sorted(
      d for k in set(a) | set(b) for d in differences(a.get(k), b.get(k), f"{prefix}{k}.")
    )
  return [] if a == b else [prefix.rstrip(".")]


def remove(workdir: str, names: Sequence[str]) -> None:
  """Removes the named files and folders of `workdir`; leaves everything else alone."""
  for name in names:
    path = os.path.join(workdir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.remove(path)


def clear(workdir: str) -> None:
  """Removes a zoo's files (used by overwrite=True); leaves unrelated files alone."""
  remove(workdir, ZOO_FILES)
