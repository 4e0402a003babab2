"""The fine-tuned zoo of merging studies (Wortsman et al., 2022).

  python -m zoo_jax.finetune --config=configs/finetuned_zoo.py --workdir=OUT

The ancestors: every model of the config's `ancestor` run (OUT/ancestor; several seeds are several
initialisations). Then `finetune.num_seeds` x grid fine-tunes of each on `finetune.dataset` (OUT),
all of them one zoo run of the population engine, each row naming its ancestor in `source_model`.
With `finetune.domains` (dataset names of one task, zoo_jax.data.domains), each ancestor is
fine-tuned on each domain instead (one run per domain, OUT/domains/<domain>, images normalised as
`finetune.dataset`), and OUT is every fine-tune evaluated on the union of the domains, its models
table naming each row's `finetune_domain`: the heterogeneous zoo of Model-GLUE
(configs/glue_zoo.py). Fine-tuning itself (any zoo's models on any dataset, one run) is the library
function zoo_jax.reuse.finetuning.finetune, which zoo_jax.select and zoo_jax.merge use too.
"""

if __name__ == "__main__":
  # The workdir's writer lock before the slow imports below (jax, orbax: seconds).
  from zoo_jax import cli as _cli

  _cli.lock_workdir_early()

import itertools
import os

import jax
import ml_collections
import numpy as np
import pandas as pd

from zoo_jax import train, zoo as zoo_lib
from zoo_jax.data import domains
from zoo_jax.engine import grid
from zoo_jax.reuse import finetuning
from zoo_jax.zoo import guard

DOMAINS_DIR = "domains"  # WORKDIR/domains/<domain>: the fine-tuning run of each domain


def finetuned_zoo(config: ml_collections.ConfigDict, workdir: str) -> zoo_lib.Zoo:
  """Trains the ancestors (workdir/ancestor), then their fine-tunes on config.finetune.dataset or on
  each of config.finetune.domains (workdir)."""
  ft = config.finetune
  finetuning.check_dataset(ft.dataset, "config.finetune.dataset")
  if ft.get("domains"):
    domains.check(domains.family(ft.domains), "config.finetune.domains", image_shape_of=ft.dataset)
  with guard.writing(workdir):  # the lock first; the zoo runs inside take it again
    return _finetuned_zoo(config, workdir)


def _finetuned_zoo(config: ml_collections.ConfigDict, workdir: str) -> zoo_lib.Zoo:
  ft = config.finetune
  ancestor_dir = os.path.join(workdir, finetuning.ANCESTOR_DIR)
  ancestor = train.train_and_evaluate(config.ancestor, ancestor_dir)
  settings = list(itertools.product(*(tuple(ft.grid[k]) for k in finetuning.HPARAMS)))
  rows = [
    dict(
      base.drop(["model_id", "cohort", "cohort_index"]),
      **dict(zip(finetuning.HPARAMS, s)),
      seed=seed,
      source_model=int(base["model_id"]),
    )
    for _, base in ancestor.models.iterrows()
    for s in settings
    for seed in range(ft.first_seed, ft.first_seed + ft.num_seeds)
  ]
  common = dict(
    dataset=ft.dataset,
    num_epochs=ft.num_epochs,
    train_size=ft.train_size,
    eval_size=ft.eval_size,
    progress_bar=config.ancestor.progress_bar,
  )
  if not ft.get("domains"):
    return finetuning.finetune(
      ancestor_dir, workdir, grid.index_models(pd.DataFrame(rows)), **common
    )
  # One fine-tuning run per domain (the engine trains a run on one dataset), then every fine-tune
  # evaluated on the union of the domains as one zoo: the heterogeneous zoo of Model-GLUE.
  tables, finals, names = [], [], domains.family(ft.domains)
  for domain in names:
    table = grid.index_models(pd.DataFrame(rows).assign(finetune_domain=domain))
    run = finetuning.finetune(
      ancestor_dir, os.path.join(workdir, DOMAINS_DIR, domain), table, domains=(domain,), **common
    )
    tables.append(table)
    finals.append(run.params(run.models["model_id"].to_numpy(), -1))
    run.close()
  params = jax.tree.map(lambda *xs: np.concatenate(xs), *finals)
  return finetuning.finetune(
    ancestor_dir,
    workdir,
    grid.index_models(pd.concat(tables, ignore_index=True)),
    params=params,
    domains=names,
    **{**common, "num_epochs": 0},
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
