"""Fine-tuning zoo models with the population engine: starting weights, tables, bad input."""

import jax
import numpy as np
import pytest

from zoo_jax import zoo as zoo_lib
from zoo_jax.reuse import finetuning


def test_finetune_starts_from_the_source_weights(small_zoo, tmp_path):
  source = zoo_lib.Zoo(small_zoo)
  ids = np.array([3, 1])
  table = finetuning.source_table(source, ids, learning_rate=1e-3)
  tuned = finetuning.finetune(
    small_zoo,
    str(tmp_path / "ft"),
    table,
    dataset="fashion_mnist",
    num_epochs=1,
    train_size=100,
    eval_size=100,
  )
  assert tuned.epochs == [0, 1]
  assert tuned.models["source_model"].tolist() == [3, 1]
  assert (tuned.models["learning_rate"] == 1e-3).all()
  start, original = tuned.params(tuned.models["model_id"], epoch=0), source.params(ids)
  jax.tree.map(np.testing.assert_array_equal, start, original)
  moved = tuned.params(tuned.models["model_id"], epoch=1)
  assert not np.allclose(moved["dense_1"]["kernel"], start["dense_1"]["kernel"])


def test_unknown_dataset_names_the_field(small_zoo, tmp_path):
  source = zoo_lib.Zoo(small_zoo)
  with pytest.raises(ValueError, match=r"dataset 'imagenet' is unknown; allowed values"):
    finetuning.finetune(
      small_zoo,
      str(tmp_path),
      finetuning.source_table(source, [0]),
      dataset="imagenet",
      num_epochs=1,
    )
  with pytest.raises(ValueError, match="Unknown fine-tuning fields"):
    finetuning.source_table(source, [0], momentum=0.9)
