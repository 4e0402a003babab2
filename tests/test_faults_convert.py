"""convert under faults: a workdir that is a file, a workdir another process writes (refused before the
source is scanned), a workdir holding another zoo."""

import os
import time

import pytest

from commands import lock_held_elsewhere, one_error_line, run_command
from test_convert import _one_trial
from zoo_jax import convert, errors


@pytest.mark.slow
def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
  src, _ = _one_trial(tmp_path)
  a_file = tmp_path / "a_file"
  a_file.write_text("not a folder")
  result, _ = run_command(
    "zoo_jax.convert", "--from=modelzoos", f"--src={src}", f"--workdir={a_file}"
  )
  assert result.returncode == 2 and "is a file, not a folder" in one_error_line(result.stderr)


def test_a_workdir_another_process_writes_is_refused_before_the_source_is_read(tmp_path):
  out = str(tmp_path / "out")
  with lock_held_elsewhere(out) as pid:
    started = time.time()
    with pytest.raises(errors.WorkdirLocked, match=f"pid {pid}"):
      convert.convert("modelzoos", str(tmp_path / "no_such_source"), out)
    assert time.time() - started < 5
  assert os.listdir(out) == [".lock"]


def test_a_workdir_of_another_conversion_is_refused(tmp_path):
  src, _ = _one_trial(tmp_path)
  out = str(tmp_path / "out")
  convert.convert("modelzoos", src, out)
  other, _ = _one_trial(tmp_path / "other", spec=("CNN", 2, "relu", 0.0))
  with pytest.raises(errors.UsageError, match="already holds another zoo"):
    convert.convert("modelzoos", other, out)
