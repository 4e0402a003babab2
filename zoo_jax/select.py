"""Rank a zoo's models for a new target without fine-tuning them, and check against fine-tuning.

  python -m zoo_jax.select --config=configs/select.py --zoo=ZOO --target=DATASET --workdir=OUT

Every usable zoo model (status ok at `config.epoch`) is scored for the target by each method:
  logme, hscore, ncc   feature scores (zoo_jax.reuse.scores, one file each) of its penultimate features
                       on `probe_size` target training images (one forward pass, no training)
  zero_shot            the accuracy of its own head on those images (10 classes -> 10 classes)
  source_acc           its validation accuracy on the zoo's own dataset (no target data; free)
  learned              Model Spider's idea in this project's terms: a regressor from the model's
                       StatNN weight embedding and its model-task scores (logme, hscore, ncc,
                       zero_shot) to fine-tuned accuracy, trained on `learned.train_tasks` (other
                       datasets; never the target), where the zoo was brute-force fine-tuned once
and against the brute-force reference: every model (or `finetune.num_models` of them, seeded)
fine-tuned `finetune.num_epochs` epochs on the target in one zoo run (head kept, one
fine-tuning recipe for all). OUT holds:
  ranking.csv     model_id, hyperparameters, one score column per method, finetuned_acc
  summary.json    per method: kendall_tau, weighted_tau, top1/top5 regret, seconds, ratio to brute force;
                  the models and epoch read
  run.json        the config, zoo, target and what was read (zoo_jax.zoo.guard): a rerun resumes,
                  computes again from a zoo that grew (config.epoch negative), or is refused
  ensembles.csv   top-K fine-tuned models by each ranking, logits averaged, on the target test split,
                  against the best single model and K random ones
  ranking.png     each score against finetuned_acc
  finetune/       the brute-force zoo; tasks/<name>/ the learned ranker's training tasks
The scores, the brute force, the learned ranker and the ensembles are library functions of
zoo_jax.reuse.ranking; this module is the command: its checks, its flow and its outputs.
"""

if __name__ == "__main__":
  # The workdir's writer lock before the slow imports below (jax, orbax: seconds).
  from zoo_jax import cli as _cli

  _cli.lock_workdir_early()

import json
import os

import ml_collections
import numpy as np

from zoo_jax import data, plots, zoo as zoo_lib
from zoo_jax.engine import grid
from zoo_jax.reuse import finetuning, ranking as ranking_lib, scores
from zoo_jax.zoo import guard

FEATURE_METHODS = scores.names()  # one per file of zoo_jax/reuse/scores/
METHODS = FEATURE_METHODS + ("zero_shot", "source_acc", "learned")
RANKING_FILE, SUMMARY_FILE, ENSEMBLES_FILE, PLOT_FILE = (
  "ranking.csv",
  "summary.json",
  "ensembles.csv",
  "ranking.png",
)
FINETUNE_DIR = "finetune"
# Everything a run writes besides its record (run.json): what a rerun on a grown zoo recomputes.
OUTPUTS = (
  RANKING_FILE,
  SUMMARY_FILE,
  ENSEMBLES_FILE,
  PLOT_FILE,
  FINETUNE_DIR,
  ranking_lib.TASKS_DIR,
)


def validate_config(config: ml_collections.ConfigDict, target: str, num_classes: int) -> None:
  """Checks the fields once, early; errors name the field and the allowed values."""
  finetuning.check_dataset(target, "--target", num_classes)
  for name in config.methods:
    if name not in METHODS:
      raise ValueError(f"config.methods has {name!r}; allowed values: {list(METHODS)}.")
  for name in config.learned.train_tasks:
    finetuning.check_dataset(name, "config.learned.train_tasks entry", num_classes)
  if "learned" in config.methods:
    if target in config.learned.train_tasks:
      raise ValueError(
        f"config.learned.train_tasks contains the target {target!r}; the learned ranker must "
        "not see the target's fine-tuning results."
      )
    if not config.learned.train_tasks:
      raise ValueError(
        "config.learned.train_tasks is empty; the learned method needs at least one task."
      )
  if config.learned.predictor not in ("ridge", "gbt"):
    raise ValueError(
      f"config.learned.predictor {config.learned.predictor!r}; allowed values: ['ridge', 'gbt']."
    )
  for field, low in (("probe_size", 2), ("finetune.num_epochs", 1)):
    value = config[field] if "." not in field else config.finetune.num_epochs
    if not isinstance(value, int) or value < low:
      raise ValueError(f"config.{field} must be an integer >= {low}, got {value!r}.")
  for k in config.ensemble.sizes:
    if not isinstance(k, int) or k < 1:
      raise ValueError(f"config.ensemble.sizes entries must be integers >= 1, got {k!r}.")


def select_and_evaluate(
  config: ml_collections.ConfigDict, zoo_dir: str, target: str, workdir: str
) -> dict:
  """Scores the zoo's models for `target` by every method, fine-tunes them, writes OUT; returns the summary."""
  with guard.writing(workdir):  # the lock first, before the zoo is read
    zoo = zoo_lib.Zoo(zoo_dir)
    try:
      return _select_and_evaluate(config, zoo, target, workdir)
    finally:
      zoo.close()


def _select_and_evaluate(
  config: ml_collections.ConfigDict, zoo: zoo_lib.Zoo, target: str, workdir: str
) -> dict:
  zoo_dir = zoo.workdir
  validate_config(config, target, data.DATASETS[zoo.config["dataset"]["name"]].num_classes)
  ids = zoo.select(status=zoo_lib.STATUS_OK, epoch=config.epoch)
  if len(ids) < 2:
    raise ValueError(
      f"Zoo {zoo_dir} has {len(ids)} usable models at epoch {config.epoch}; ranking needs 2."
    )
  epoch = zoo._epoch(config.epoch)
  # Inputs read and checked: the workdir is claimed (or found to be this run's, or refused).
  read = [guard.read_models(zoo, ids, [epoch])]
  guard.claim(
    workdir,
    {
      "command": "select",
      "config": json.loads(config.to_json()),
      "zoo": os.path.abspath(zoo_dir),
      "target": target,
    },
    read=read,
    follow_newest=config.epoch < 0,
    outputs=OUTPUTS,
    record_file=guard.RUN_FILE,
    holds="another selection (another config, zoo or target)",
  )
  print(f"read {guard.describe(read)}")
  ranking, seconds = ranking_lib.task_scores(
    zoo, ids, config.epoch, target, config.probe_size, config.seed
  )
  at = zoo.metrics[zoo.metrics["epoch"] == epoch].set_index("model_id").loc[ids]
  ranking["source_acc"] = at["validation_acc"].to_numpy()
  seconds["source_acc"] = 0.0
  methods = [m for m in config.methods if m != "learned"]
  train_seconds = None
  if "learned" in config.methods:
    ranking["learned"], seconds["learned"], train_seconds = ranking_lib.learned_scores(
      config, zoo, ids, ranking, seconds["all"], workdir
    )
    methods.append("learned")
  subset = ids
  if config.finetune.num_models is not None and config.finetune.num_models < len(ids):
    subset = np.sort(
      np.random.default_rng(config.seed).choice(ids, config.finetune.num_models, replace=False)
    )
  tuned, bf_seconds, tuned_zoo = ranking_lib.brute_force(
    config, zoo, subset, target, os.path.join(workdir, FINETUNE_DIR)
  )
  hparams = (
    zoo.models.set_index("model_id").loc[ids, list(grid.GRID_FIELDS) + ["seed"]].reset_index()
  )
  ranking = hparams.merge(ranking[["model_id"] + methods], on="model_id").merge(
    tuned, on="model_id", how="left"
  )
  zoo_lib.write_table_atomic(ranking, os.path.join(workdir, RANKING_FILE))

  scored = ranking.dropna(subset=["finetuned_acc"])
  summary = {
    "zoo": os.path.abspath(zoo_dir),
    "target": target,
    "models": int(len(ids)),
    "finetuned_models": int(len(scored)),
    "epoch": int(epoch),
    "read": read,
    ranking_lib.BRUTE_FORCE: {
      "seconds": bf_seconds,
      "num_epochs": config.finetune.num_epochs,
      "best_finetuned_acc": float(scored["finetuned_acc"].max()),
      "mean_finetuned_acc": float(scored["finetuned_acc"].mean()),
    },
    "methods": {},
  }
  for method in methods:
    entry = ranking_lib.ranking_metrics(
      scored[method].to_numpy(), scored["finetuned_acc"].to_numpy()
    )
    # source_acc reads the zoo's own metrics: no compute, no ratio (None).
    entry.update(
      seconds=seconds[method],
      ratio_to_brute_force=bf_seconds / seconds[method] if seconds[method] > 0 else None,
    )
    if method == "learned":
      entry.update(
        train_tasks=list(config.learned.train_tasks), amortized_train_seconds=train_seconds
      )
    summary["methods"][method] = entry
  cheap = [m for m in methods if (summary["methods"][m]["ratio_to_brute_force"] or np.inf) >= 10]
  if cheap:
    best = max(cheap, key=lambda m: summary["methods"][m]["kendall_tau"])
    summary["best_cheap_method"] = {"method": best, **summary["methods"][best]}
  ens = ranking_lib.ensembles(config, scored, tuned_zoo, target, methods)
  zoo_lib.write_table_atomic(ens, os.path.join(workdir, ENSEMBLES_FILE))
  summary["ensembles"] = ens.astype(object).where(ens.notna(), None).to_dict(orient="records")
  zoo_lib.write_json_atomic(summary, os.path.join(workdir, SUMMARY_FILE))
  plots.selection_ranking(scored, summary, os.path.join(workdir, PLOT_FILE))
  return summary


if __name__ == "__main__":
  from absl import flags
  from ml_collections import config_flags

  from zoo_jax import cli

  _CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/select.py or alike.", lock_config=True
  )
  _ZOO = flags.DEFINE_string("zoo", None, "The zoo whose models are ranked.")
  _TARGET = flags.DEFINE_string("target", None, "Target dataset, a key of zoo_jax.data.DATASETS.")
  _WORKDIR = flags.DEFINE_string("workdir", None, "Where ranking.csv, summary.json, ... go.")
  flags.mark_flags_as_required(["config", "zoo", "target", "workdir"])

  def main(argv):
    del argv
    summary = select_and_evaluate(_CONFIG.value, _ZOO.value, _TARGET.value, _WORKDIR.value)
    print(json.dumps(summary, indent=1))

  cli.run(main)
