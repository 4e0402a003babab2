"""finetune under faults: a second fine-tuning of other models into a finished one (the engine's
models-table guard, which sample, merge and select share), a workdir that is a file."""

import pytest

from commands import (
  assert_file_as_workdir_is_one_line,
  file_bytes,
)
from zoo_jax import zoo
from zoo_jax.reuse import finetuning


def test_other_models_into_a_finished_run_are_refused_and_its_tables_kept(small_zoo, tmp_path):
  out = str(tmp_path / "out")
  source = zoo.Zoo(small_zoo)
  first = finetuning.source_table(source, [0, 1], learning_rate=1e-3)
  finetuning.finetune(small_zoo, out, first, dataset="mnist5k", num_epochs=0, eval_size=50)
  kept = file_bytes(out, zoo.MODELS_FILE, zoo.METRICS_FILE)
  other = finetuning.source_table(source, [0, 1, 2], learning_rate=3e-3)  # same config, other rows
  with pytest.raises(
    ValueError, match=r"the models table \(2 models kept in checkpoints/, 3 given\)"
  ):
    finetuning.finetune(small_zoo, out, other, dataset="mnist5k", num_epochs=0, eval_size=50)
  assert file_bytes(out, *kept) == kept
  assert zoo.check(out).ok, str(zoo.check(out))
  again = finetuning.finetune(small_zoo, out, first, dataset="mnist5k", num_epochs=0, eval_size=50)
  assert len(again.models) == 2


@pytest.mark.slow
def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
  assert_file_as_workdir_is_one_line(
    tmp_path, "zoo_jax.finetune", "--config=configs/finetuned_zoo.py"
  )
