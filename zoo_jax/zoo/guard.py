"""The one guard of every command that writes a workdir.

    with guard.writing(workdir):                    # the folder made (one line if it cannot be) and
      read = guard.read_record(zoo, states)         # locked, before anything is read or written
      state = guard.claim(workdir, record, read=[read], follow_newest=..., outputs=OUTPUTS)

The workdir records what the run was asked (its config, the paths it was given) and what it read:
per zoo, the path, the epochs and models, and a fingerprint of those states (a hash of their rows
in the zoo's models and metrics tables, which the checkpoints hold and which every retraining
changes). A rerun resumes when both agree. When only the states differ because the zoo grew and the
config asks for its newest epochs, the outputs of the earlier read are stale: they are removed, the
run says so and computes them again (`claim` returns GREW). Anything else is refused in one line that
names what differs, and nothing in the workdir is touched. The record is written only after the
inputs were read and checked, so a failed start leaves no claim behind.

train's own guard (engine.train_config.check_workdir) compares its config and models table the
same way, with `differences`.
"""

import contextlib
import hashlib
import json
import os
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from zoo_jax import errors
from zoo_jax.zoo import lock
from zoo_jax.zoo.files import (
  CHECKPOINTS_DIR,
  CONFIG_FILE,
  MODELS_FILE,
  as_stored,
  differences,
  read_json,
  remove,
  write_json_atomic,
  write_table_atomic,
)

RUN_FILE = (
  "run.json"  # what a command that writes a zoo was asked and read (its config.json is the zoo's)
)
NEW, RESUME, GREW = "new", "resume", "grew"


def make_workdir(workdir: str, flag: str = "--workdir") -> None:
  """Creates `workdir` if needed, or one clear error: it is a file, or cannot be written."""
  if not workdir:
    raise errors.UsageError(f"{flag} is empty; give the folder to write to.")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise errors.UsageError(f"{flag} {workdir!r} is a file, not a folder; choose another {flag}.")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as error:
    raise errors.UsageError(
      f"Cannot create {flag} {workdir!r}: {error.strerror or error}; choose a writable {flag}."
    ) from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise errors.UsageError(f"{flag} {workdir!r} is not writable; choose a writable {flag}.")


@contextlib.contextmanager
def writing(workdir: str, flag: str = "--workdir") -> Iterator[None]:
  """The workdir made and its writer lock held (zoo.lock) for the block: the first thing a command does.

  A workdir this call made is removed again when the block fails before writing anything into it
  (bad input found while reading): a failed start leaves nothing behind.
  """
  made = not os.path.exists(workdir)
  make_workdir(workdir, flag)
  try:
    with lock.workdir_lock(workdir):
      yield
  except BaseException:
    if made:
      remove_if_unused(workdir)
    raise


def remove_if_unused(workdir: str) -> None:
  """Removes `workdir` if it holds nothing but its lock file (a run that wrote nothing)."""
  try:
    if set(os.listdir(workdir)) <= {lock.LOCK_FILE} and lock.holder(workdir) is None:
      remove(workdir, [lock.LOCK_FILE])
      os.rmdir(workdir)
  except OSError:
    pass  # another process is using it: leave it


def spans(values: Sequence[int]) -> str:
  """Sorted integers in words: [0, 1, 2, 5, 7, 8] -> "0-2,5,7-8" (what a record lists and a command prints)."""
  values = sorted({int(v) for v in values})
  parts, start = [], None
  for i, v in enumerate(values):
    if start is None:
      start = v
    if i + 1 == len(values) or values[i + 1] != v + 1:
      parts.append(str(v) if v == start else f"{start}-{v}")
      start = None
  return ",".join(parts)


def read_record(zoo: Any, states: pd.DataFrame) -> dict:
  """What a run read from `zoo` (a zoo_jax.zoo.Zoo): the (model_id, epoch) pairs of `states`.

  {"zoo": absolute path, "epochs": "0-4", "models": "0-77", "states": count, "fingerprint": hash of
  those states' rows in the models and metrics tables}.
  """
  pairs = states[["model_id", "epoch"]].astype(np.int64).drop_duplicates()
  key = pd.MultiIndex.from_frame(pairs)
  metrics = zoo.metrics.set_index(["model_id", "epoch"])
  rows = metrics[metrics.index.isin(key)].sort_index()
  models = zoo.models[zoo.models["model_id"].isin(pairs["model_id"])].sort_values("model_id")
  digest = hashlib.sha256()
  digest.update(as_stored(models).to_csv(index=False).encode())
  digest.update(as_stored(rows.reset_index()).to_csv(index=False).encode())
  return {
    "zoo": os.path.abspath(zoo.workdir),
    "epochs": spans(pairs["epoch"]),
    "models": spans(pairs["model_id"]),
    "states": int(len(pairs)),
    "fingerprint": digest.hexdigest()[:16],
  }


def read_models(zoo: Any, model_ids: Sequence[int], epochs: Sequence[int]) -> dict:
  """read_record of every (model, epoch) of `model_ids` x `epochs`: what a selection of models reads."""
  pairs = [(int(i), int(e)) for e in epochs for i in model_ids]
  return read_record(zoo, pd.DataFrame(pairs, columns=["model_id", "epoch"]))


def describe(read: Sequence[dict]) -> str:
  """The read records in one line, as the commands print them."""
  return "; ".join(
    f"{r['zoo']}: {r['states']} states, models {r['models']}, epochs {r['epochs']}" for r in read
  )


def _epochs(read: dict) -> set[int]:
  out = set()
  for part in str(read.get("epochs", "")).split(","):
    if part:
      low, _, high = part.partition("-")
      out.update(range(int(low), int(high or low) + 1))
  return out


def _read_difference(old: Sequence[dict] | None, new: Sequence[dict]) -> str | None:
  """How two lists of read records differ, in words; None when they agree."""
  if old is None:
    return "it records no states read (written by an older zoo_jax)"
  if [r.get("zoo") for r in old] != [r["zoo"] for r in new]:
    return f"it read the zoos {[r.get('zoo') for r in old]}"
  for before, now in zip(old, new):
    for field in ("epochs", "models", "fingerprint"):
      if before.get(field) != now[field]:
        if field == "fingerprint":
          return f"the states of {now['zoo']} changed since it read them (retrained or overwritten)"
        return f"it read {field} {before.get(field)} of {now['zoo']}, this run reads {now[field]}"
  return None


def _grew(old: Sequence[dict], new: Sequence[dict]) -> bool:
  """True when each zoo only gained newer epochs since the old read (same zoos)."""
  return [r.get("zoo") for r in old] == [r["zoo"] for r in new] and all(
    _epochs(before) and max(_epochs(before)) < max(_epochs(now)) for before, now in zip(old, new)
  )


def claim(
  workdir: str,
  record: dict,
  tables: dict[str, pd.DataFrame] | None = None,
  *,
  read: Sequence[dict] | None = None,
  follow_newest: bool = False,
  outputs: Sequence[str] = (),
  record_file: str = CONFIG_FILE,
  holds: str = "another zoo",
  flag: str = "--workdir",
) -> str:
  """Makes `workdir` hold `record` (in `record_file`) and `tables` ({file name: table}), or checks it does.

  `read` (read_record's, one per zoo read) is kept in the record under "read". Returns NEW (nothing
  there yet: written now), RESUME (this run's record and reads: the caller resumes or finds its
  outputs complete) or GREW (this config, but the zoo gained newer epochs and `follow_newest` says the
  run takes the newest: `outputs` are removed and the record rewritten; the caller computes again).
  Anything else (another record, other tables, other states read, a zoo without a record) is
  refused with one line naming `flag` and what differs; nothing in the workdir is touched.
  """
  tables = tables or {}
  record = dict(record)
  if read is not None:
    record["read"] = list(read)
  path = os.path.join(workdir, record_file)

  def refuse(problem: str):
    raise errors.UsageError(f"{flag} {workdir!r} {problem}; choose another {flag}.")

  if os.path.exists(path):
    old = read_json(path)
    fields = differences(
      {k: v for k, v in old.items() if k != "read"},
      {k: v for k, v in _as_json(record).items() if k != "read"},
    )
    if fields:
      refuse(f"already holds {holds} (fields {fields[:5]} of its {record_file} differ)")
    for name, table in tables.items():
      table_path = os.path.join(workdir, name)
      if os.path.exists(table_path) and not pd.read_csv(table_path).equals(as_stored(table)):
        refuse(f"already holds {holds} (its {name} differs)")
    if read is None:
      state = RESUME
    else:
      problem = _read_difference(old.get("read"), record["read"])
      if problem is None:
        state = RESUME
      elif follow_newest and old.get("read") is not None and _grew(old["read"], record["read"]):
        print(
          f"The zoo grew since {workdir} was written ({problem}); its results of the earlier "
          "states are stale and are computed again from the newest epochs."
        )
        remove(workdir, outputs)
        write_json_atomic(record, path)
        state = GREW
      else:
        refuse(f"holds results computed from other states ({problem})")
  else:
    if any(
      os.path.exists(os.path.join(workdir, name))
      for name in (CHECKPOINTS_DIR, MODELS_FILE, CONFIG_FILE, RUN_FILE, *outputs)
      if name not in tables and name != record_file
    ):
      refuse("holds files of another run (a zoo or results without this command's record)")
    state = NEW
  os.makedirs(workdir, exist_ok=True)
  for name, table in tables.items():
    if not os.path.exists(os.path.join(workdir, name)):
      write_table_atomic(table, os.path.join(workdir, name))
  if state == NEW:
    write_json_atomic(record, path)
  return state


def _as_json(record: dict) -> dict:
  return json.loads(json.dumps(record))
