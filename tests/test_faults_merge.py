"""merge under faults: a rerun with another config into a finished merge, a workdir being written by
another process, a workdir that is a file. Refused in one line before anything is read or written;
the merged zoo already there is kept and `zoo check` passes on it."""

import os

import pytest

from commands import (
  assert_file_as_workdir_is_one_line,
  assert_refused_while_another_writes,
  file_bytes,
  one_error_line,
  run_command,
)
from test_merge import _config
from zoo_jax import errors, merge, zoo


def _fast(**overrides):
  c = _config(**{"methods": ("uniform_soup",), "interpolation.num_pairs": 0, **overrides})
  c.select.activation = "tanh"  # the small zoo's two tanh models
  return c


@pytest.mark.slow
def test_a_second_merge_with_another_config_is_refused_and_the_first_kept(small_zoo, tmp_path):
  out = str(tmp_path / "out")
  merge.merge_and_evaluate(_fast(max_models=2), small_zoo, out)
  kept = file_bytes(out, zoo.MODELS_FILE, zoo.METRICS_FILE, merge.SUMMARY_FILE)
  with pytest.raises(errors.UsageError, match=r"another merge .*max_models"):
    merge.merge_and_evaluate(_fast(max_models=3, seed=7), small_zoo, out)
  assert file_bytes(out, *kept) == kept
  assert zoo.check(out).ok, str(zoo.check(out))
  again = merge.merge_and_evaluate(_fast(max_models=2), small_zoo, out)  # the same: complete
  assert file_bytes(out, *kept) == kept
  assert set(again["method"]) == {"ingredient", "uniform_soup"}


def test_a_workdir_another_process_writes_is_refused_at_once(small_zoo, tmp_path):
  out = str(tmp_path / "out")
  assert_refused_while_another_writes(
    out, lambda: merge.merge_and_evaluate(_fast(), small_zoo, out)
  )


@pytest.mark.slow
def test_a_workdir_that_is_a_file_and_a_broken_config_are_one_line(small_zoo, tmp_path):
  assert_file_as_workdir_is_one_line(
    tmp_path, "zoo_jax.merge", "--config=configs/merge.py", f"--zoo={small_zoo}"
  )
  raising = tmp_path / "raising.py"
  raising.write_text("def get_config():\n  raise RuntimeError('no config today')\n")
  result, _ = run_command(
    "zoo_jax.merge", f"--config={raising}", f"--zoo={small_zoo}", f"--workdir={tmp_path / 'o'}"
  )
  assert result.returncode == 2
  line = one_error_line(result.stderr)
  assert "raised RuntimeError: no config today (line 2)" in line
  assert not os.path.exists(tmp_path / "o")
