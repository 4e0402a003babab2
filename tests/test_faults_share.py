"""zoo slice and zoo export under faults: --dst that is a file, a --dst another process writes, a
rerun after the source was trained again. Refused in one line; what was written is kept."""

import os
import time

import pytest

from commands import lock_held_elsewhere, one_error_line, run_command
from test_faults_encode import _zoo_config
from zoo_jax import errors, train, zoo


@pytest.mark.slow
@pytest.mark.parametrize("command", ["slice", "export"])
def test_a_dst_that_is_a_file_is_one_line(small_zoo, tmp_path, command):
  a_file = tmp_path / "a_file"
  a_file.write_text("not a folder")
  result, _ = run_command("zoo_jax.zoo", command, f"--src={small_zoo}", f"--dst={a_file}")
  assert result.returncode == 2
  assert "--dst" in (line := one_error_line(result.stderr)) and "is a file, not a folder" in line
  assert a_file.read_text() == "not a folder"


@pytest.mark.parametrize("write", [zoo.slice_zoo, zoo.export])
def test_a_dst_another_process_writes_is_refused_at_once(small_zoo, tmp_path, write):
  out = str(tmp_path / "out")
  with lock_held_elsewhere(out) as pid:
    started = time.time()
    with pytest.raises(errors.WorkdirLocked, match=f"pid {pid}"):
      write(small_zoo, out)
    assert time.time() - started < 5
  assert os.listdir(out) == [".lock"]


@pytest.mark.slow
def test_a_slice_of_a_source_trained_again_is_refused_and_kept(tmp_path):
  source, out = str(tmp_path / "zoo"), str(tmp_path / "slice")
  train.train_and_evaluate(_zoo_config(1), source)
  zoo.slice_zoo(source, out, model_ids=[0, 1], epochs=[0, 1])
  train.train_and_evaluate(
    _zoo_config(1, **{"population.first_seed": 7, "overwrite": True}), source
  )
  with pytest.raises(errors.UsageError, match=r"another zoo .*source_config.population.first_seed"):
    zoo.slice_zoo(source, out, model_ids=[0, 1], epochs=[0, 1])
  assert zoo.check(out).ok, str(zoo.check(out))
