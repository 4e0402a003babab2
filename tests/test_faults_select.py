"""select under faults: a workdir another process writes (the lock comes first), a rerun with another
config, a workdir that is a file. Refused in one line; the ranking already written is kept."""

import os

import pytest

from commands import (
  assert_file_as_workdir_is_one_line,
  assert_refused_while_another_writes,
)
from test_select import _config
from zoo_jax import errors, select


def test_a_workdir_another_process_writes_is_refused_at_once(small_zoo, tmp_path):
  out = str(tmp_path / "out")
  assert_refused_while_another_writes(
    out, lambda: select.select_and_evaluate(_config(), small_zoo, "fashion_mnist", out)
  )


@pytest.mark.slow
def test_a_rerun_with_another_config_or_target_is_refused_and_the_ranking_kept(small_zoo, tmp_path):
  out = str(tmp_path / "out")
  c = _config()
  c.methods = ("logme", "source_acc")
  select.select_and_evaluate(c, small_zoo, "fashion_mnist", out)
  with open(os.path.join(out, select.RANKING_FILE), "rb") as f:
    kept = f.read()
  other = _config()
  other.methods = ("logme", "source_acc")
  other.probe_size = 40
  with pytest.raises(errors.UsageError, match=r"another selection .*probe_size"):
    select.select_and_evaluate(other, small_zoo, "fashion_mnist", out)
  with pytest.raises(errors.UsageError, match=r"another selection .*target"):
    select.select_and_evaluate(c, small_zoo, "mnist5k_rot90", out)
  with open(os.path.join(out, select.RANKING_FILE), "rb") as f:
    assert f.read() == kept
  summary = select.select_and_evaluate(c, small_zoo, "fashion_mnist", out)  # the same: it reruns
  assert summary["read"][0]["states"] == 4 and summary["read"][0]["epochs"] == "1"


@pytest.mark.slow
def test_a_workdir_that_is_a_file_is_one_line(small_zoo, tmp_path):
  assert_file_as_workdir_is_one_line(
    tmp_path,
    "zoo_jax.select",
    "--config=configs/select.py",
    f"--zoo={small_zoo}",
    "--target=mnist5k",
  )
