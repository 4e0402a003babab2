"""SIGKILL a running command once it has written a file: the kill -9 scaffold of the resume tests."""

import os
import signal
import subprocess
import time


def kill_when_exists(proc: subprocess.Popen, path: str, timeout: float = 600) -> None:
  """Waits until `path` exists (e.g. an epoch's committed training state), then SIGKILLs `proc`."""
  deadline = time.time() + timeout
  while not os.path.exists(path) and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  assert proc.returncode == -signal.SIGKILL, "the command ended before it was killed"
