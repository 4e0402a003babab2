"""Running a command line as a user does, and what its error output must look like."""

import contextlib
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_command(module: str, *args: str, timeout: float = 600, env: dict | None = None):
  """(CompletedProcess, seconds) of `python -m module args...` from the repository root."""
  started = time.time()
  result = subprocess.run(
    [sys.executable, "-m", module, *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
    env=None if env is None else {**os.environ, **env},
  )
  return result, time.time() - started


def one_error_line(stderr: str) -> str:
  """The one `error: ...` line of a failed command (warnings aside), asserting there is no traceback."""
  lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("warning:")]
  assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-2000:]
  assert "Traceback" not in stderr
  return lines[0]


@contextlib.contextmanager
def lock_held_elsewhere(workdir: str):
  """Another live process holds `workdir`'s writer lock for the block (as a running command does)."""
  os.makedirs(workdir, exist_ok=True)
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import time; from zoo_jax.zoo import lock\n"
      f"with lock.workdir_lock({workdir!r}):\n  print('held', flush=True); time.sleep(120)",
    ],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline().strip() == "held"
    yield holder.pid
  finally:
    holder.kill()
    holder.wait()
