"""One writer per workdir: an advisory lock held for a whole run.

    with lock.workdir_lock(workdir):   # raises errors.WorkdirLocked naming the live holder
      ...                              # write the zoo

The lock is `fcntl.flock` on WORKDIR/.lock, which records the holder (pid, host, command,
start time) while it is held. The kernel drops a flock when its process dies, even by kill -9,
so a lock left by a dead run is taken over at once, with a warning that names it. Readers
(`zoo.Zoo`) never take the lock; `holder(workdir)` tells them whether a writer is at work.
Locks are per process and re-entrant (a sampling run holds its workdir and trains a zoo into
it). On a shared filesystem the lock spans hosts where the filesystem supports flock (NFS
with lockd, Lustre mounted with `flock`). In a multi-process run, only the process that
writes the tables (process 0) should enter it.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import warnings
from typing import Iterator

from zoo_jax import errors

LOCK_FILE = ".lock"

# Locks this process holds: real path -> [file object, depth]. A process-wide table because a
# flock belongs to an open file, and a second open of the same file in this process would
# conflict with the first.
_HELD: dict[str, list] = {}
_HELD_GUARD = threading.Lock()


def _describe(record: dict) -> str:
  return (
    f"pid {record.get('pid')} on host {record.get('host')!r} (started {record.get('started', '?')}: "
    f"{record.get('command', '?')})"
  )


def _read_record(f) -> dict | None:
  f.seek(0)
  text = f.read().strip()
  if not text:
    return None
  try:
    record = json.loads(text)
  except json.JSONDecodeError:
    return {"pid": "?", "host": "?", "command": "unreadable lock record"}
  return record if isinstance(record, dict) else None


@contextlib.contextmanager
def workdir_lock(workdir: str) -> Iterator[None]:
  """Holds the workdir's writer lock for the `with` block; the workdir must exist.

  Raises errors.WorkdirLocked at once (no waiting) when another live process holds it.
  """
  key = os.path.realpath(workdir)
  with _HELD_GUARD:
    if key in _HELD:
      _HELD[key][1] += 1
      held = True
    else:
      held = False
  if held:
    try:
      yield
    finally:
      with _HELD_GUARD:
        _HELD[key][1] -= 1
    return
  path = os.path.join(workdir, LOCK_FILE)
  try:
    f = open(path, "a+")
  except OSError as error:
    raise errors.UsageError(
      f"Cannot open the lock file {path}: {error.strerror}. Choose a writable workdir."
    ) from error
  try:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as error:
    record = _read_record(f)
    for _ in range(40):  # a holder that has just taken the lock writes its record a moment later
      if record:
        break
      time.sleep(0.025)
      record = _read_record(f)
    f.close()
    if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      raise errors.UsageError(f"Cannot lock {path}: {error.strerror}.") from error
    who = _describe(record) if record else "another process"
    raise errors.WorkdirLocked(
      f"{workdir} is being written by {who}; wait for it to finish, or stop it, "
      "then run this command again."
    ) from None
  stale = _read_record(f)
  if stale:
    warnings.warn(
      f"Took over the lock of {workdir}: its holder, {_describe(stale)}, ended without releasing it."
    )
  f.seek(0)
  f.truncate()
  f.write(
    json.dumps(
      {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:300],
      }
    )
    + "\n"
  )
  f.flush()
  with _HELD_GUARD:
    _HELD[key] = [f, 0]
  try:
    yield
  finally:
    with _HELD_GUARD:
      del _HELD[key]
    f.seek(0)
    f.truncate()  # an empty record: released cleanly
    f.flush()
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    f.close()


def holder(workdir: str) -> dict | None:
  """The record of the process writing `workdir` now, or None (never locked, released, or its
  holder died on this host). A holder on another host is assumed alive."""
  try:
    with open(os.path.join(workdir, LOCK_FILE)) as f:
      record = _read_record(f)
  except OSError:
    return None
  if not record:
    return None
  if record.get("host") == socket.gethostname():
    if record.get("pid") == os.getpid():
      return record
    try:
      os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
      return None
    except (PermissionError, ValueError, KeyError, TypeError):
      pass  # alive under another user, or an unreadable record: assume a writer
  return record
