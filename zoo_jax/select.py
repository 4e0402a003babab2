"""Rank a zoo's models for a new target without fine-tuning them, and check against fine-tuning.

  python -m zoo_jax.select --config=configs/select.py --zoo=ZOO --target=DATASET --workdir=OUT

Every usable zoo model (status ok at `config.epoch`) is scored for the target by each method:
  logme, hscore, ncc   feature scores (zoo_jax.transfer) of its penultimate features on
                       `probe_size` target training images (one forward pass, no training)
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
  summary.json    per method: kendall_tau, weighted_tau, top1/top5 regret, seconds, ratio to brute force
  ensembles.csv   top-K fine-tuned models by each ranking, logits averaged, on the target test split,
                  against the best single model and K random ones
  ranking.png     each score against finetuned_acc
  finetune/       the brute-force zoo; tasks/<name>/ the learned ranker's training tasks
"""

import dataclasses
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import pandas as pd

from zoo_jax import (
  data,
  features,
  finetune as finetune_lib,
  grid,
  plots,
  properties,
  transfer,
  weights,
  zoo as zoo_lib,
)

FEATURE_METHODS = tuple(transfer.SCORES)
METHODS = FEATURE_METHODS + ("zero_shot", "source_acc", "learned")
RANKING_FILE, SUMMARY_FILE, ENSEMBLES_FILE, PLOT_FILE = (
  "ranking.csv",
  "summary.json",
  "ensembles.csv",
  "ranking.png",
)
FINETUNE_DIR, TASKS_DIR = "finetune", "tasks"
BRUTE_FORCE = "brute_force"


def validate_config(config: ml_collections.ConfigDict, target: str, num_classes: int) -> None:
  """Checks the fields once, early; errors name the field and the allowed values."""
  finetune_lib.check_dataset(target, "--target", num_classes)
  for name in config.methods:
    if name not in METHODS:
      raise ValueError(f"config.methods has {name!r}; allowed values: {list(METHODS)}.")
  for name in config.learned.train_tasks:
    finetune_lib.check_dataset(name, "config.learned.train_tasks entry", num_classes)
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


# ---------------------------------------------------------------------------- cheap scores


def _probe_images(dataset: str, size: int, seed: int) -> data.Dataset:
  """A seeded subset of `size` training images of `dataset` (all of them if fewer)."""
  train = data.load(dataset, "train", source=data.DATASETS[dataset].sources[0])
  keep = np.sort(np.random.default_rng(seed).permutation(len(train))[:size])
  return dataclasses.replace(train, images=train.images[keep], labels=train.labels[keep])


def population_outputs(
  zoo: zoo_lib.Zoo, model_ids: np.ndarray, epoch: int, dataset: data.Dataset
) -> tuple[np.ndarray, np.ndarray]:
  """(penultimate features [M, N, D], logits [M, N, K]) of the zoo's models on a dataset, cohort by cohort."""
  rows = zoo.models.set_index("model_id").loc[model_ids].reset_index()
  feats, logits = [None] * len(rows), [None] * len(rows)
  conv_impl = zoo.config.get("conv_impl", "xla")
  for _, cohort_rows in rows.groupby("cohort", sort=True):
    cohort = grid.cohort_of(cohort_rows.iloc[0])
    outputs = features.make_outputs(
      cohort,
      mean=dataset.mean,
      std=dataset.std,
      num_classes=dataset.num_classes,
      conv_impl=conv_impl,
    )
    f, z = outputs(zoo.params(cohort_rows["model_id"].to_numpy(), epoch), dataset.images)
    for i, position in enumerate(cohort_rows.index):
      feats[position], logits[position] = f[i], z[i]
  return np.stack(feats), np.stack(logits)


def task_scores(
  zoo: zoo_lib.Zoo, model_ids: np.ndarray, epoch: int, dataset: str, probe_size: int, seed: int
) -> tuple[pd.DataFrame, dict[str, float]]:
  """Every feature score and zero_shot of each model for `dataset`, and the seconds each took
  (the forward pass counted in every method)."""
  start = time.time()
  probe = _probe_images(dataset, probe_size, seed)
  feats, logits = population_outputs(zoo, model_ids, epoch, probe)
  forward = time.time() - start
  table = pd.DataFrame({"model_id": model_ids})
  seconds = {}
  for name, score in transfer.SCORES.items():
    start = time.time()
    table[name] = [score(f, probe.labels) for f in feats]
    seconds[name] = forward + time.time() - start
  table["zero_shot"] = np.mean(np.argmax(logits, -1) == probe.labels[None], axis=1)
  seconds["zero_shot"] = forward
  seconds["all"] = (
    sum(seconds.values()) - (len(seconds) - 1) * forward
  )  # one forward pass, every score
  return table, seconds


# ---------------------------------------------------------------------------- brute force


def brute_force(
  config: ml_collections.ConfigDict,
  zoo: zoo_lib.Zoo,
  model_ids: np.ndarray,
  dataset: str,
  workdir: str,
) -> tuple[pd.DataFrame, float, zoo_lib.Zoo]:
  """Fine-tunes the models on `dataset` in one run; (model_id, finetuned_acc, finetuned_val_acc), seconds, zoo."""
  ft = config.finetune
  table = finetune_lib.source_table(
    zoo,
    model_ids,
    optimizer=ft.optimizer,
    learning_rate=ft.learning_rate,
    weight_decay=ft.weight_decay,
    dropout=ft.dropout,
  )
  start = time.time()
  tuned = finetune_lib.finetune(
    zoo.workdir,
    workdir,
    table,
    dataset=dataset,
    num_epochs=ft.num_epochs,
    epoch=config.epoch,
    train_size=ft.train_size,
    eval_size=ft.eval_size,
    progress_bar=config.progress_bar,
  )
  seconds = time.time() - start
  last = tuned.metrics[tuned.metrics["epoch"] == tuned.epochs[-1]].merge(
    tuned.models[["model_id", "source_model"]], on="model_id"
  )
  result = pd.DataFrame(
    {
      "model_id": last["source_model"].to_numpy(),
      "finetuned_acc": last["test_acc"].to_numpy(),
      "finetuned_val_acc": last["validation_acc"].to_numpy(),
      "finetuned_id": last["model_id"].to_numpy(),
    }
  )
  return result, seconds, tuned


# ---------------------------------------------------------------------------- learned ranker


def _statnn(zoo: zoo_lib.Zoo, model_ids: np.ndarray, epoch: int) -> np.ndarray:
  params = zoo.params(model_ids, epoch)
  return np.asarray(weights.statnn_features(jax.tree.map(np.asarray, params)), np.float64)


def learned_scores(
  config: ml_collections.ConfigDict,
  zoo: zoo_lib.Zoo,
  model_ids: np.ndarray,
  target_scores: pd.DataFrame,
  target_seconds: float,
  workdir: str,
) -> tuple[np.ndarray, float, float]:
  """(predicted fine-tuned accuracy rank [M], seconds on the target, seconds of training on the other tasks).

  Inputs per (model, task): the model's StatNN embedding and its model-task scores on the task;
  the regression target is the fine-tuned accuracy's rank within its task, scaled to [0, 1]
  (the ranking is what transfers between tasks, not the accuracy level).
  """
  start = time.time()
  embedding = _statnn(zoo, model_ids, config.epoch)
  embed_seconds = time.time() - start
  task_cols = list(FEATURE_METHODS) + ["zero_shot"]
  xs, ys = [], []
  start = time.time()
  for task in config.learned.train_tasks:
    scores, _ = task_scores(zoo, model_ids, config.epoch, task, config.probe_size, config.seed)
    tuned, _, _ = brute_force(config, zoo, model_ids, task, os.path.join(workdir, TASKS_DIR, task))
    acc = scores[["model_id"]].merge(tuned, on="model_id", how="left")["finetuned_acc"].to_numpy()
    xs.append(np.concatenate([embedding, scores[task_cols].to_numpy()], axis=1))
    ys.append(pd.Series(acc).rank(pct=True).to_numpy())
  train_seconds = time.time() - start
  start = time.time()
  x_target = np.concatenate([embedding, target_scores[task_cols].to_numpy()], axis=1)
  predicted = properties.fit_probe(
    config.learned.predictor, np.concatenate(xs), np.concatenate(ys), x_target, seed=config.seed
  )
  return predicted, target_seconds + embed_seconds + time.time() - start, train_seconds


# ---------------------------------------------------------------------------- ensembles


def ensembles(
  config: ml_collections.ConfigDict,
  ranking: pd.DataFrame,
  tuned: zoo_lib.Zoo,
  target: str,
  methods: list[str],
) -> pd.DataFrame:
  """Top-K fine-tuned models by each method, logits averaged, on the target's test split; with the
  best single model (by test and by validation accuracy) and K random models (mean of draws)."""
  test = data.load(target, "test", source=data.DATASETS[target].sources[0])
  rows = ranking.dropna(subset=["finetuned_acc"]).reset_index(drop=True)
  ids = rows["finetuned_id"].to_numpy().astype(int)
  _, logits = population_outputs(tuned, ids, -1, test)  # [M, N, K]
  correct = lambda members: float(np.mean(np.argmax(logits[members].mean(0), -1) == test.labels))
  single = np.array([correct([i]) for i in range(len(ids))])
  out = [
    {"method": "best_single_by_test", "k": 1, "test_acc": single.max()},
    {
      "method": "best_single_by_validation",
      "k": 1,
      "test_acc": single[np.argmax(rows["finetuned_val_acc"].to_numpy())],
    },
  ]
  rng = np.random.default_rng(config.seed)
  for k in config.ensemble.sizes:
    k = min(k, len(ids))
    for method in methods + [BRUTE_FORCE]:
      column = "finetuned_val_acc" if method == BRUTE_FORCE else method
      top = np.argsort(-rows[column].to_numpy(), kind="stable")[:k]
      out.append({"method": method, "k": k, "test_acc": correct(top)})
    draws = [
      correct(rng.choice(len(ids), k, replace=False)) for _ in range(config.ensemble.random_draws)
    ]
    out.append(
      {"method": "random", "k": k, "test_acc": float(np.mean(draws)), "std": float(np.std(draws))}
    )
  return pd.DataFrame(out)


# ---------------------------------------------------------------------------- driver


def select_and_evaluate(
  config: ml_collections.ConfigDict, zoo_dir: str, target: str, workdir: str
) -> dict:
  """Scores the zoo's models for `target` by every method, fine-tunes them, writes OUT; returns the summary."""
  zoo = zoo_lib.Zoo(zoo_dir)
  validate_config(config, target, data.DATASETS[zoo.config["dataset"]["name"]].num_classes)
  os.makedirs(workdir, exist_ok=True)
  ids = zoo.select(status=zoo_lib.STATUS_OK, epoch=config.epoch)
  if len(ids) < 2:
    raise ValueError(
      f"Zoo {zoo_dir} has {len(ids)} usable models at epoch {config.epoch}; ranking needs 2."
    )
  ranking, seconds = task_scores(zoo, ids, config.epoch, target, config.probe_size, config.seed)
  epoch = zoo.epochs[config.epoch] if config.epoch < 0 else config.epoch
  at = zoo.metrics[zoo.metrics["epoch"] == epoch].set_index("model_id").loc[ids]
  ranking["source_acc"] = at["validation_acc"].to_numpy()
  seconds["source_acc"] = 0.0
  methods = [m for m in config.methods if m != "learned"]
  train_seconds = None
  if "learned" in config.methods:
    ranking["learned"], seconds["learned"], train_seconds = learned_scores(
      config, zoo, ids, ranking, seconds["all"], workdir
    )
    methods.append("learned")
  subset = ids
  if config.finetune.num_models is not None and config.finetune.num_models < len(ids):
    subset = np.sort(
      np.random.default_rng(config.seed).choice(ids, config.finetune.num_models, replace=False)
    )
  tuned, bf_seconds, tuned_zoo = brute_force(
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
    BRUTE_FORCE: {
      "seconds": bf_seconds,
      "num_epochs": config.finetune.num_epochs,
      "best_finetuned_acc": float(scored["finetuned_acc"].max()),
      "mean_finetuned_acc": float(scored["finetuned_acc"].mean()),
    },
    "methods": {},
  }
  for method in methods:
    entry = transfer.ranking_metrics(scored[method].to_numpy(), scored["finetuned_acc"].to_numpy())
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
  ens = ensembles(config, scored, tuned_zoo, target, methods)
  zoo_lib.write_table_atomic(ens, os.path.join(workdir, ENSEMBLES_FILE))
  summary["ensembles"] = ens.astype(object).where(ens.notna(), None).to_dict(orient="records")
  zoo_lib.write_json_atomic(summary, os.path.join(workdir, SUMMARY_FILE))
  plots.selection_ranking(scored, summary, os.path.join(workdir, PLOT_FILE))
  return summary


if __name__ == "__main__":
  import json

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
