"""Fine-tune zoo models on a dataset, all of them as one zoo run (the population engine).

`finetune` hands a zoo's weights to `train.train_and_evaluate` with `initial_params`: every
model starts from its source model's weights, keeps its head (the target must have the source's
number of classes) and trains with its row's hyperparameters. The result is a zoo whose models
table names each row's `source_model`. With num_epochs=0 it only evaluates the weights on the
dataset. `source_table` builds the rows from a zoo's models; `check_dataset` is the early check of
a dataset name every caller (zoo_jax.select, zoo_jax.merge, zoo_jax.finetune) shares.
"""

from typing import Any

import jax
import numpy as np
import pandas as pd

from zoo_jax import data, train, zoo as zoo_lib
from zoo_jax.engine import grid, train_config

ANCESTOR_DIR = "ancestor"  # the ancestor of a fine-tuned zoo (zoo_jax.finetune writes ZOO/ancestor)
# Columns a fine-tuning row may set: the training hyperparameters of the engine.
HPARAMS = ("optimizer", "learning_rate", "weight_decay", "dropout")


def check_dataset(name: Any, field: str, num_classes: int | None = None) -> None:
  """A ValueError naming `field` unless `name` is a dataset (with `num_classes` classes)."""
  if name not in data.DATASETS:
    raise ValueError(f"{field} {name!r} is unknown; allowed values: {sorted(data.DATASETS)}.")
  if num_classes is not None and data.DATASETS[name].num_classes != num_classes:
    raise ValueError(
      f"{field} {name!r} has {data.DATASETS[name].num_classes} classes but the zoo's models "
      f"have {num_classes} outputs; fine-tuning keeps the head, so pick a {num_classes}-class dataset."
    )


def source_table(zoo: zoo_lib.Zoo, model_ids: np.ndarray, **hparams) -> pd.DataFrame:
  """Rows to fine-tune: the zoo's rows of `model_ids` (seed, arch, hyperparameters), `source_model` set,
  hyperparameters overridden by `hparams` (e.g. one fine-tuning learning rate for every model)."""
  unknown = set(hparams) - set(HPARAMS)
  if unknown:
    raise ValueError(f"Unknown fine-tuning fields {sorted(unknown)}; allowed: {list(HPARAMS)}.")
  rows = zoo.models.set_index("model_id").loc[np.asarray(model_ids)].reset_index()
  # A zoo of fine-tunes already names its own sources: the new source is the zoo's model.
  rows = rows.drop(columns=["cohort", "cohort_index", "source_model"], errors="ignore")
  rows = rows.rename(columns={"model_id": "source_model"})
  for name, value in hparams.items():
    if value is not None:
      rows[name] = value
  return grid.index_models(rows)


def finetune(
  zoo_dir: str,
  workdir: str,
  table: pd.DataFrame,
  *,
  dataset: str,
  num_epochs: int,
  epoch: int = -1,
  train_size: int | None = None,
  eval_size: int | None = None,
  params: Any = None,
  progress_bar: bool = False,
  domains: tuple[str, ...] | None = None,
) -> zoo_lib.Zoo:
  """Fine-tunes the zoo's models `table.source_model` (at `epoch`) on `dataset` for `num_epochs`, one run.

  `params` [len(table), ...] replaces the zoo's weights as the starting points (e.g. merged ones).
  `domains` (dataset names, zoo_jax.data.domains): fine-tune on the union of their splits instead,
  normalised as `dataset`. Returns the fine-tuned zoo in `workdir` (resumed or found complete like
  any zoo run).
  """
  zoo = zoo_lib.Zoo(zoo_dir)
  check_dataset(dataset, "dataset", _num_classes(zoo))
  config = train_config.stored_config(zoo_dir)
  config.dataset.name = dataset
  config.dataset.source = data.DATASETS[dataset].sources[0]
  config.dataset.data_dir = None
  config.dataset.domains = tuple(domains) if domains else None
  config.dataset.train_size = train_size
  config.dataset.eval_size = eval_size
  config.num_epochs = num_epochs
  config.progress_bar = progress_bar
  config.overwrite = False
  if params is None:
    sources = table["source_model"].to_numpy()
    unique, inverse = np.unique(sources, return_inverse=True)
    params = jax.tree.map(lambda x: x[inverse], zoo.params(unique, epoch))
  zoo.close()
  return train.train_and_evaluate(
    config,
    workdir,
    models_table=table,
    initial_params=lambda rows: jax.tree.map(lambda x: x[rows["model_id"].to_numpy()], params),
  )


def _num_classes(zoo: zoo_lib.Zoo) -> int:
  return data.DATASETS[zoo.config["dataset"]["name"]].num_classes
