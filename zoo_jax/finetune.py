"""The fine-tuned zoo of merging studies (Wortsman et al., 2022).

  python -m zoo_jax.finetune --config=configs/finetuned_zoo.py --workdir=OUT

One ancestor trained on the config's `ancestor` run (OUT/ancestor), then `finetune.num_seeds` x
grid fine-tunes of it on `finetune.dataset` (OUT), all of them one zoo run of the population
engine. Fine-tuning itself (any zoo's models on any dataset, one run) is the library function
zoo_jax.reuse.finetuning.finetune, which zoo_jax.select and zoo_jax.merge use too.
"""

if __name__ == "__main__":
  # The workdir's writer lock before the slow imports below (jax, orbax: seconds).
  from zoo_jax import cli as _cli

  _cli.lock_workdir_early()

import itertools
import os

import ml_collections
import pandas as pd

from zoo_jax import train, zoo as zoo_lib
from zoo_jax.engine import grid
from zoo_jax.reuse import finetuning
from zoo_jax.zoo import guard


def finetuned_zoo(config: ml_collections.ConfigDict, workdir: str) -> zoo_lib.Zoo:
  """Trains the ancestor (workdir/ancestor), then its fine-tunes on config.finetune.dataset (workdir)."""
  ft = config.finetune
  finetuning.check_dataset(ft.dataset, "config.finetune.dataset")
  with guard.writing(workdir):  # the lock first; the zoo runs inside take it again
    return _finetuned_zoo(config, workdir)


def _finetuned_zoo(config: ml_collections.ConfigDict, workdir: str) -> zoo_lib.Zoo:
  ft = config.finetune
  ancestor_dir = os.path.join(workdir, finetuning.ANCESTOR_DIR)
  ancestor = train.train_and_evaluate(config.ancestor, ancestor_dir)
  if len(ancestor.models) != 1:
    raise ValueError(
      f"config.ancestor describes {len(ancestor.models)} models; the fine-tuned zoo needs one "
      "(config.ancestor.population.num_seeds=1 and one value per grid field)."
    )
  base = ancestor.models.iloc[0]
  settings = list(itertools.product(*(tuple(ft.grid[k]) for k in finetuning.HPARAMS)))
  rows = [
    dict(
      base.drop(["model_id", "cohort", "cohort_index"]),
      **dict(zip(finetuning.HPARAMS, s)),
      seed=seed,
      source_model=0,
    )
    for s in settings
    for seed in range(ft.first_seed, ft.first_seed + ft.num_seeds)
  ]
  table = grid.index_models(pd.DataFrame(rows))
  return finetuning.finetune(
    ancestor_dir,
    workdir,
    table,
    dataset=ft.dataset,
    num_epochs=ft.num_epochs,
    train_size=ft.train_size,
    eval_size=ft.eval_size,
    progress_bar=config.ancestor.progress_bar,
  )


if __name__ == "__main__":
  from absl import flags
  from ml_collections import config_flags

  from zoo_jax import cli

  _CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/finetuned_zoo.py or alike.", lock_config=True
  )
  _WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where the fine-tuned zoo goes (the ancestor in WORKDIR/ancestor)."
  )
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv):
    del argv
    finetuned_zoo(_CONFIG.value, _WORKDIR.value)

  cli.run(main)
