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


def assert_refused_while_another_writes(workdir: str, call) -> None:
  """`call()` into a workdir another live process writes is refused at once, naming it, and writes nothing."""
  import pytest

  from zoo_jax import errors

  with lock_held_elsewhere(workdir) as pid:
    started = time.time()
    with pytest.raises(errors.WorkdirLocked, match=f"pid {pid}"):
      call()
    assert time.time() - started < 5
  assert os.listdir(workdir) == [".lock"]


def assert_file_as_workdir_is_one_line(tmp_path, module: str, *args: str, flag: str = "--workdir"):
  """`python -m module args --flag=<an existing file>` ends with one line and exit code 2, the file intact."""
  a_file = tmp_path / "a_file"
  a_file.write_text("not a folder")
  result, _ = run_command(module, *args, f"{flag}={a_file}")
  assert result.returncode == 2
  line = one_error_line(result.stderr)
  assert flag in line and "is a file, not a folder" in line
  assert a_file.read_text() == "not a folder"


def file_bytes(workdir: str, *names: str) -> dict[str, bytes]:
  """{name: content} of files of a workdir: what a refused run must leave as it was."""
  out = {}
  for name in names:
    with open(os.path.join(workdir, name), "rb") as f:
      out[name] = f.read()
  return out
