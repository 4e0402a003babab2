"""sparsify under faults: usage errors end through the one error path (one line, exit code 2), a
workdir another process writes is refused at once, a source that grew is refused naming it."""

import os

import pytest

from commands import (
  assert_file_as_workdir_is_one_line,
  assert_refused_while_another_writes,
  one_error_line,
  run_command,
)
from configs import sparsify as sparsify_config
from test_faults_encode import _zoo_config
from zoo_jax import errors, sparsify, train


def _config():
  c = sparsify_config.get_config()
  c.num_epochs, c.eval_batch_size = 1, 100
  return c


@pytest.mark.slow
def test_usage_errors_are_one_line_with_exit_code_2(small_zoo, tmp_path):
  result, _ = run_command("zoo_jax.sparsify", f"--workdir={tmp_path / 'o'}")  # no --zoo
  assert result.returncode == 2 and "--zoo" in one_error_line(result.stderr)
  result, _ = run_command(
    "zoo_jax.sparsify", f"--zoo={tmp_path / 'typo'}", f"--workdir={tmp_path / 'o'}"
  )
  assert result.returncode == 2 and "is not a zoo" in one_error_line(result.stderr)
  assert not os.path.exists(tmp_path / "o")
  assert_file_as_workdir_is_one_line(tmp_path, "zoo_jax.sparsify", f"--zoo={small_zoo}")


def test_a_workdir_another_process_writes_is_refused_at_once(small_zoo, tmp_path):
  out = str(tmp_path / "twin")
  assert_refused_while_another_writes(out, lambda: sparsify.sparsify_zoo(_config(), small_zoo, out))


@pytest.mark.slow
def test_a_source_that_grew_is_refused_naming_what_changed(tmp_path):
  source, twin = str(tmp_path / "zoo"), str(tmp_path / "twin")
  train.train_and_evaluate(_zoo_config(1), source)
  sparsify.sparsify_zoo(_config(), source, twin, model_ids=[0, 1])
  train.train_and_evaluate(_zoo_config(2), source)
  with pytest.raises(errors.UsageError, match="another zoo"):
    sparsify.sparsify_zoo(_config(), source, twin, model_ids=[0, 1])
