"""Rank a zoo's models for a target task without fine-tuning them; fine-tune them to check; ensemble them.

The library half of zoo_jax.select (which runs it as a command and writes its outputs):
  population_outputs  penultimate features and logits of a zoo's models on a dataset, cohort by cohort
  task_scores         every transferability score of zoo_jax.reuse.scores and the head's zero-shot
                      accuracy of each model on a probe of target images, with the seconds each took
  brute_force         every model fine-tuned on the target in one zoo run (zoo_jax.reuse.finetuning)
  training_tasks      the other tasks both learned rankers train on: every score and the brute force
  learned_scores      a regressor (ridge or gradient-boosted trees) from the model's StatNN weight
                      embedding and its model-task scores to the rank of its fine-tuned accuracy,
                      trained on other tasks, never the target
  spider_scores       Model Spider (zoo_jax.reuse.spider): model and task tokens, a fitness head
                      trained to rank on other tasks, the top candidates re-ranked
  ensembles           top-K fine-tuned models by each ranking, logits averaged, against the best
                      single model and K random ones
  ranking_metrics     Kendall's and weighted tau against the truth, top-k regret
"""

import os
import time

import jax
import ml_collections
import numpy as np
import pandas as pd
import scipy.stats

from zoo_jax import data, weights, zoo as zoo_lib
from zoo_jax.encoders import properties
from zoo_jax.engine import grid
from zoo_jax.reuse import finetuning, fitting, penultimate, scores, spider

TASKS_DIR = "tasks"  # learned_scores' fine-tuned zoos: WORKDIR/tasks/<task>
BRUTE_FORCE = (
  "brute_force"  # the ranking by fine-tuned validation accuracy (ensembles) and its summary key
)
REPEAT_SEED_OFFSET = 1_000_003  # the noise ceiling's second brute force: every seed shifted by this
SHORT_SEED_OFFSET = 2_000_003  # the short fine-tune's seeds: a data order of its own


# ---------------------------------------------------------------------------- cheap scores


def probe_images(dataset: str, size: int | None, seed: int, split: str = "train") -> data.Dataset:
  """A seeded subset of `size` images of `dataset`'s `split` (all of them if fewer, or None)."""
  images = data.load(dataset, split, source=data.DATASETS[dataset].sources[0])
  keep = np.sort(np.random.default_rng(seed).permutation(len(images))[:size])
  return images.take(keep)


def population_outputs(
  zoo: zoo_lib.Zoo, model_ids: np.ndarray, epoch: int, dataset: data.Dataset
) -> tuple[np.ndarray, np.ndarray]:
  """(penultimate features [M, N, D], logits [M, N, K]) of the zoo's models on a dataset, cohort by cohort."""
  rows = zoo.models.set_index("model_id").loc[model_ids].reset_index()
  return outputs_by_cohort(
    rows,
    dataset,
    zoo.config.get("conv_impl", "xla"),
    lambda part: zoo.params(part["model_id"].to_numpy(), epoch),
  )


def outputs_by_cohort(
  rows: pd.DataFrame, dataset: data.Dataset, conv_impl: str, params_of
) -> tuple[np.ndarray, np.ndarray]:
  """(features [M, N, D], logits [M, N, K]) of the models of `rows` (a models table's rows, any
  cohorts) on a dataset, one forward pass per cohort; `params_of(part)` gives the weights of a
  cohort's rows (`part`, whose index is their position in `rows`)."""
  rows = rows.reset_index(drop=True)
  keys = [grid.cohort_of(row) for _, row in rows.iterrows()]
  feats, logits = [None] * len(rows), [None] * len(rows)
  for key in dict.fromkeys(keys):
    part = rows[[k == key for k in keys]]
    outputs = penultimate.make_outputs(
      key,
      mean=dataset.mean,
      std=dataset.std,
      num_classes=dataset.num_classes,
      conv_impl=conv_impl,
    )
    f, z = outputs(params_of(part), dataset.images)
    for i, position in enumerate(part.index):
      feats[position], logits[position] = f[i], z[i]
  return np.stack(feats), np.stack(logits)


def task_scores(
  zoo: zoo_lib.Zoo, model_ids: np.ndarray, epoch: int, dataset: str, probe_size: int, seed: int
) -> tuple[pd.DataFrame, dict[str, float]]:
  """Every score of zoo_jax.reuse.scores and zero_shot of each model for `dataset`, and the seconds each
  took (the forward pass counted in every method; "all": one forward pass and every score)."""
  start = time.time()
  probe = probe_images(dataset, probe_size, seed)
  feats, logits = population_outputs(zoo, model_ids, epoch, probe)
  forward = time.time() - start
  table = pd.DataFrame({"model_id": model_ids})
  seconds = {}
  for name in scores.names():
    score = scores.get(name)
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
  domains: tuple[str, ...] | None = None,
  seed_offset: int = 0,
) -> tuple[pd.DataFrame, float, zoo_lib.Zoo]:
  """Fine-tunes the models on `dataset` (on the union of `domains` if given) in one run (the recipe
  of `config.finetune`, zoo_jax.select's config); (model_id, finetuned_acc, finetuned_val_acc,
  finetuned_id), seconds, the fine-tuned zoo. `seed_offset` shifts every fine-tuning seed (batch
  order, dropout): a second run with another offset measures the reference's own noise."""
  ft = config.finetune
  table = finetuning.source_table(
    zoo,
    model_ids,
    optimizer=ft.optimizer,
    learning_rate=ft.learning_rate,
    weight_decay=ft.weight_decay,
    dropout=ft.dropout,
  )
  table["seed"] += seed_offset
  start = time.time()
  tuned = finetuning.finetune(
    zoo.workdir,
    workdir,
    table,
    dataset=dataset,
    num_epochs=ft.num_epochs,
    epoch=config.epoch,
    train_size=ft.train_size,
    eval_size=ft.eval_size,
    progress_bar=config.progress_bar,
    domains=domains,
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


def short_finetune(
  config: ml_collections.ConfigDict,
  zoo: zoo_lib.Zoo,
  model_ids: np.ndarray,
  dataset: str,
  workdir: str,
) -> tuple[np.ndarray, float]:
  """(each model's validation accuracy [M] after a short fine-tune on `dataset`, seconds): the
  brute force's recipe cut to `config.short_finetune.num_epochs` epochs on `train_size` images,
  its seeds shifted by SHORT_SEED_OFFSET (a data order of its own), one run in `workdir`."""
  short = ml_collections.ConfigDict(config.to_dict())
  short.finetune.num_epochs = config.short_finetune.num_epochs
  short.finetune.train_size = config.short_finetune.train_size
  tuned, seconds, _ = brute_force(
    short, zoo, model_ids, dataset, workdir, seed_offset=SHORT_SEED_OFFSET
  )
  found = pd.DataFrame({"model_id": model_ids}).merge(tuned, on="model_id", how="left")
  return found["finetuned_val_acc"].to_numpy(), seconds


def noise_ceiling(
  config: ml_collections.ConfigDict,
  zoo: zoo_lib.Zoo,
  model_ids: np.ndarray,
  dataset: str,
  workdir: str,
  first: np.ndarray,
  accuracy=None,
  domains: tuple[str, ...] | None = None,
) -> dict[str, float]:
  """The brute force run again with other fine-tuning seeds: Kendall's and weighted tau between
  its accuracies and `first` (the first run's, in `model_ids` order), the best a ranking judged
  against one run can be expected to reach. `accuracy(tuned, table)` reads a run's accuracies
  (default: its test accuracy); the seconds of the second run are reported."""
  tuned, seconds, tuned_zoo = brute_force(
    config, zoo, model_ids, dataset, workdir, domains=domains, seed_offset=REPEAT_SEED_OFFSET
  )
  tuned = pd.DataFrame({"model_id": model_ids}).merge(tuned, on="model_id", how="left")
  second = tuned["finetuned_acc"].to_numpy() if accuracy is None else accuracy(tuned_zoo, tuned)
  metrics = ranking_metrics(second, np.asarray(first))
  return {
    "kendall_tau": metrics["kendall_tau"],
    "weighted_tau": metrics["weighted_tau"],
    "seconds": seconds,
  }


# ---------------------------------------------------------------------------- learned ranker


def _statnn(zoo: zoo_lib.Zoo, model_ids: np.ndarray, epoch: int) -> np.ndarray:
  params = zoo.params(model_ids, epoch)
  return np.asarray(weights.statnn_features(jax.tree.map(np.asarray, params)), np.float64)


def tasks_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Where the training tasks' fine-tuned zoos go: config.learned.tasks_dir, or WORKDIR/tasks."""
  return config.learned.get("tasks_dir") or os.path.join(workdir, TASKS_DIR)


def training_tasks(
  config: ml_collections.ConfigDict, zoo: zoo_lib.Zoo, model_ids: np.ndarray, workdir: str
) -> tuple[list[tuple[str, pd.DataFrame, np.ndarray]], float]:
  """([(task, its scores table (task_scores), fine-tuned accuracy [M])] for every task of
  `config.learned.train_tasks`, the seconds spent). Each task's brute force is a zoo run in
  tasks_dir/<task>: found complete, it is read back, so runs sharing a tasks_dir pay once."""
  start = time.time()
  out = []
  for task in config.learned.train_tasks:
    table, _ = task_scores(zoo, model_ids, config.epoch, task, config.probe_size, config.seed)
    tuned, _, _ = brute_force(
      config, zoo, model_ids, task, os.path.join(tasks_dir(config, workdir), task)
    )
    acc = table[["model_id"]].merge(tuned, on="model_id", how="left")["finetuned_acc"].to_numpy()
    out.append((task, table, acc))
  return out, time.time() - start


def learned_scores(
  config: ml_collections.ConfigDict,
  zoo: zoo_lib.Zoo,
  model_ids: np.ndarray,
  target_scores: pd.DataFrame,
  target_seconds: float,
  tasks: list[tuple[str, pd.DataFrame, np.ndarray]],
) -> tuple[np.ndarray, float]:
  """(predicted fine-tuned accuracy rank [M], seconds on the target).

  Inputs per (model, task): the model's StatNN embedding and its model-task scores on the task
  (every score of zoo_jax.reuse.scores and zero_shot); the regression target is the fine-tuned
  accuracy's rank within its task, scaled to [0, 1] (the ranking is what transfers between tasks,
  not the accuracy level). `tasks` are the training tasks (training_tasks), never the target.
  """
  start = time.time()
  embedding = _statnn(zoo, model_ids, config.epoch)
  task_cols = list(scores.names()) + ["zero_shot"]
  xs = [np.concatenate([embedding, table[task_cols].to_numpy()], axis=1) for _, table, _ in tasks]
  ys = [pd.Series(acc).rank(pct=True).to_numpy() for _, _, acc in tasks]
  x_target = np.concatenate([embedding, target_scores[task_cols].to_numpy()], axis=1)
  predicted = properties.fit_probe(
    config.learned.predictor, np.concatenate(xs), np.concatenate(ys), x_target, seed=config.seed
  )
  return predicted, target_seconds + time.time() - start


def spider_scores(
  config: ml_collections.ConfigDict,
  zoo: zoo_lib.Zoo,
  model_ids: np.ndarray,
  target: str,
  tasks: list[tuple[str, pd.DataFrame, np.ndarray]],
) -> tuple[np.ndarray, float, float]:
  """(scores [M], seconds on the target, seconds fitting the head) of Model Spider
  (zoo_jax.reuse.spider): model tokens from the weights, task tokens from the probe model (the
  zoo's best by source validation accuracy), a fitness head trained to rank on `tasks`, the top
  `config.spider.rerank_k` re-ranked with their NCC on the target."""
  sp = config.spider
  at = zoo.metrics[zoo.metrics["epoch"] == zoo._epoch(config.epoch)].set_index("model_id")
  probe_model = model_ids[int(np.argmax(at.loc[model_ids, "validation_acc"].to_numpy()))]

  def token(images: data.Dataset) -> np.ndarray:
    feats, _ = population_outputs(zoo, np.array([probe_model]), config.epoch, images)
    return spider.task_token(feats[0], images.labels)

  probe = lambda task: probe_images(task, config.probe_size, config.seed)

  start = time.time()
  embedding = _statnn(zoo, model_ids, config.epoch)
  tokens = np.stack([token(probe(task)) for task, _, _ in tasks])
  model, params = spider.fit_fitness(
    fitting.standardise(embedding),
    fitting.standardise(tokens),
    np.stack([acc for _, _, acc in tasks]),
    token_dim=sp.token_dim,
    hidden=tuple(sp.hidden),
    steps=sp.steps,
    learning_rate=sp.learning_rate,
    seed=config.seed,
  )
  fit_seconds = time.time() - start
  start = time.time()
  images = probe(target)
  head = spider.fitness(
    model,
    params,
    fitting.standardise(embedding),
    fitting.standardise(token(images)[None], tokens)[0],
  )
  candidates = np.argsort(-head, kind="stable")[: sp.rerank_k]
  candidate_scores = np.zeros(len(candidates))
  if len(candidates):
    feats, _ = population_outputs(zoo, model_ids[candidates], config.epoch, images)
    candidate_scores = np.array([scores.get("ncc")(f, images.labels) for f in feats])
  return spider.rerank(head, candidates, candidate_scores), time.time() - start, fit_seconds


# ---------------------------------------------------------------------------- ensembles


def ensemble_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
  """Accuracy of models' logits [M, N, K] averaged into one prediction per example (N labels)."""
  return float(np.mean(np.argmax(np.asarray(logits).mean(0), -1) == np.asarray(labels)))


def ensembles(
  config: ml_collections.ConfigDict,
  ranking: pd.DataFrame,
  tuned: zoo_lib.Zoo,
  target: str,
  methods: list[str],
) -> pd.DataFrame:
  """Top-K fine-tuned models by each method, logits averaged, on the target's test split; with the
  best single model (by test and by validation accuracy) and K random models (mean of draws).
  `config.ensemble.sizes` are the K, `config.ensemble.random_draws` the random draws per K."""
  test = data.load(target, "test", source=data.DATASETS[target].sources[0])
  rows = ranking.dropna(subset=["finetuned_acc"]).reset_index(drop=True)
  ids = rows["finetuned_id"].to_numpy().astype(int)
  _, logits = population_outputs(tuned, ids, -1, test)  # [M, N, K]
  correct = lambda members: ensemble_accuracy(logits[members], test.labels)
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


# ---------------------------------------------------------------------------- how good a ranking is


def ranking_metrics(
  scores: np.ndarray, truth: np.ndarray, top: tuple[int, ...] = (1, 5)
) -> dict[str, float]:
  """How well `scores` rank models whose true value (e.g. fine-tuned accuracy) is `truth`.

  kendall_tau and weighted_tau (scipy; weighted tau stresses the top of the ranking), and
  top-k regret: the best true value minus the best true value among the k highest-scored models.
  Non-finite scores rank last.
  """
  scores, truth = np.asarray(scores, np.float64), np.asarray(truth, np.float64)
  if scores.shape != truth.shape or scores.ndim != 1:
    raise ValueError(
      f"scores and truth must be [M] vectors of one length, got {scores.shape}, {truth.shape}."
    )
  scores = np.where(np.isfinite(scores), scores, -np.inf)
  finite = np.where(
    np.isfinite(scores), scores, np.min(scores[np.isfinite(scores)], initial=0.0) - 1.0
  )
  out = {
    "kendall_tau": float(scipy.stats.kendalltau(finite, truth).statistic),
    "weighted_tau": float(scipy.stats.weightedtau(finite, truth).statistic),
  }
  order = np.argsort(-finite, kind="stable")
  for k in top:
    out[f"top{k}_regret"] = float(truth.max() - truth[order[:k]].max())
  return out
