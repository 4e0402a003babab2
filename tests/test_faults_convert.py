"""convert under faults: a workdir that is a file, a workdir another process writes (refused before the
source is scanned), a workdir holding another zoo."""

import pytest

from commands import (
  assert_file_as_workdir_is_one_line,
  assert_refused_while_another_writes,
)
from test_convert import _one_trial
from zoo_jax import convert, errors


@pytest.mark.slow
def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
  src, _ = _one_trial(tmp_path)
  assert_file_as_workdir_is_one_line(
    tmp_path, "zoo_jax.convert", "--from=modelzoos", f"--src={src}"
  )


def test_a_workdir_another_process_writes_is_refused_before_the_source_is_read(tmp_path):
  out = str(tmp_path / "out")
  assert_refused_while_another_writes(
    out, lambda: convert.convert("modelzoos", str(tmp_path / "no_such_source"), out)
  )


def test_a_workdir_of_another_conversion_is_refused(tmp_path):
  src, _ = _one_trial(tmp_path)
  out = str(tmp_path / "out")
  convert.convert("modelzoos", src, out)
  other, _ = _one_trial(tmp_path / "other", spec=("CNN", 2, "relu", 0.0))
  with pytest.raises(errors.UsageError, match="already holds another zoo"):
    convert.convert("modelzoos", other, out)
