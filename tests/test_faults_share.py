"""zoo slice and zoo export under faults: --dst that is a file, a --dst another process writes, a
rerun after the source was trained again. Refused in one line; what was written is kept."""

import pytest

from commands import (
  assert_file_as_workdir_is_one_line,
  assert_refused_while_another_writes,
)
from test_faults_encode import _zoo_config
from zoo_jax import errors, train, zoo


@pytest.mark.slow
@pytest.mark.parametrize("command", ["slice", "export"])
def test_a_dst_that_is_a_file_is_one_line(small_zoo, tmp_path, command):
  assert_file_as_workdir_is_one_line(
    tmp_path, "zoo_jax.zoo", command, f"--src={small_zoo}", flag="--dst"
  )


@pytest.mark.parametrize("write", [zoo.slice_zoo, zoo.export])
def test_a_dst_another_process_writes_is_refused_at_once(small_zoo, tmp_path, write):
  out = str(tmp_path / "out")
  assert_refused_while_another_writes(out, lambda: write(small_zoo, out))


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
