"""Merge a zoo's models: soups, weight-matched averages, task arithmetic, TIES, clusters, loss barriers.

  python -m zoo_jax.merge --config=configs/merge.py --zoo=ZOO --workdir=OUT

The selected models (one architecture and activation; `config.select` filters the models table)
at `config.epoch` are merged in weight space:
  uniform_soup       the plain average of every model (Wortsman et al., 2022)
  greedy_soup        models in order of validation accuracy, each kept if the soup's validation
                     accuracy does not drop
  aligned_average    every model aligned to the best one, then averaged: the merge of independently
                     seeded models (Ainsworth et al., 2023); `config.alignment` "weights" (weight
                     matching) or "activations" (unit outputs on training images matched), both in
                     zoo_jax.weights.matching
  cluster_<k>        the aligned average within each cluster of a hierarchical clustering by
                     aligned weight distance (Model-GLUE's first step: merge only what is close)
  task_arithmetic    ancestor + lambda * sum of task vectors (Ilharco et al., 2023), lambda by validation
  ties               ancestor + lambda * TIES-merged task vectors (Yadav et al., 2023): trim to the
                     top `ties.density` magnitudes, elect each weight's sign, average the agreeing ones
The last two need the ancestor the models were fine-tuned from: `config.ancestor`, or ZOO/ancestor
(what zoo_jax.finetune writes). OUT is a zoo (zoo_jax.zoo.Zoo reads it; written by the training
engine with num_epochs=0, which evaluates the given weights): the ingredients and every merge, the
models table naming each row's `method` and `ingredients`; plus
  merge_summary.csv  method, ingredients, validation and test accuracy, vs the mean and best ingredient
  barrier.csv        loss and accuracy along the straight line between model pairs, naive and aligned
  clusters.csv       each model's cluster and its naive and aligned distance to the reference model
  merge_summary.json the midpoint and maximum loss barriers per pair, and the clusters
  barrier.png        the interpolation curves
"""

import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd
import scipy.cluster.hierarchy
import scipy.spatial.distance

from zoo_jax import (
  data,
  features,
  finetune,
  grid,
  models,
  plots,
  population,
  train,
  train_config,
  weights,
  zoo as zoo_lib,
)

SUMMARY_FILE, SUMMARY_JSON, BARRIER_FILE, CLUSTERS_FILE, PLOT_FILE = (
  "merge_summary.csv",
  "merge_summary.json",
  "barrier.csv",
  "clusters.csv",
  "barrier.png",
)
MERGE_CONFIG_FILE = "merge_config.json"
ALIGNMENTS = ("weights", "activations")
METHODS = ("uniform_soup", "greedy_soup", "aligned_average", "clusters", "task_arithmetic", "ties")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks the fields once, early; errors name the field and the allowed values."""
  for name in config.methods:
    if name not in METHODS:
      raise ValueError(f"config.methods has {name!r}; allowed values: {list(METHODS)}.")
  for field, low in (
    ("max_models", 2),
    ("interpolation.num_points", 3),
    ("interpolation.num_pairs", 0),
    ("clustering.num_clusters", 1),
  ):
    section, _, name = field.rpartition(".")
    value = (config[section] if section else config)[name]
    if not isinstance(value, int) or value < low:
      raise ValueError(f"config.{field} must be an integer >= {low}, got {value!r}.")
  if config.alignment not in ALIGNMENTS:
    raise ValueError(
      f"config.alignment {config.alignment!r} is unknown; allowed values: {list(ALIGNMENTS)}."
    )
  if not 0.0 < config.ties.density <= 1.0:
    raise ValueError(f"config.ties.density must be in (0, 1], got {config.ties.density!r}.")
  if not config.scales:
    raise ValueError("config.scales is empty; task arithmetic and TIES pick their lambda from it.")


def _selection(zoo: zoo_lib.Zoo, config: ml_collections.ConfigDict) -> pd.DataFrame:
  """The models to merge (status ok), checked to share one architecture and activation."""
  for field in config.select:
    if field not in zoo.models.columns:
      raise ValueError(
        f"config.select.{field}: not a models-table column; columns: {list(zoo.models.columns)}."
      )
  ids = zoo.select(status=zoo_lib.STATUS_OK, epoch=config.epoch, **dict(config.select))
  rows = zoo.models.set_index("model_id").loc[ids].reset_index()
  for field in ("arch", "activation"):
    values = sorted(rows[field].astype(str).unique())
    if len(values) > 1:
      raise ValueError(
        f"Zoo {zoo.workdir} mixes models of {field} {values}; weights merge only within one "
        f"{field}: set config.select.{field} to one of them."
      )
  if len(rows) < 2:
    raise ValueError(
      f"config.select {dict(config.select)} keeps {len(rows)} usable models of {zoo.workdir}; "
      "merging needs at least 2."
    )
  return rows.iloc[: config.max_models]


class _Evaluator:
  """Loss and accuracy of weights [P, ...] on the zoo's validation, test and (subset of) train split."""

  def __init__(self, zoo: zoo_lib.Zoo, cohort: population.Cohort, eval_size: int | None, seed: int):
    ds = zoo.config["dataset"]
    self.splits = {}
    for split in data.SPLITS:
      s = data.load_as_zoo(ds, split, models.image_size(zoo.config["model"]["arch"]))
      keep = np.sort(np.random.default_rng(seed).permutation(len(s))[: eval_size or len(s)])
      self.splits[split] = (jnp.asarray(s.images[keep]), jnp.asarray(s.labels[keep]))
    self.normalization = (s.mean, s.std)
    self._evaluate = population.make_evaluate(
      cohort,
      batch_size=500,
      mean=s.mean,
      std=s.std,
      num_classes=s.num_classes,
      conv_impl=zoo.config.get("conv_impl", "xla"),
    )

  def __call__(self, params: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    metrics = self._evaluate(jax.tree.map(jnp.asarray, params), *self.splits[split])
    return np.asarray(metrics.loss), np.asarray(metrics.accuracy)


def _align_to(
  params: Any,
  ref: int,
  spec: weights.WeightSpec,
  config: ml_collections.ConfigDict,
  cohort: population.Cohort,
  evaluate: "_Evaluator",
) -> Any:
  """Every model [M, ...] with its hidden units permuted to match model `ref` (same functions):
  by weight matching, or by matching unit outputs on `config.matching_images` training images."""
  if config.alignment == "weights":
    aligned = [
      _take(params, i) if i == ref else weights.align(_take(params, ref), _take(params, i), spec)
      for i in range(len(jax.tree.leaves(params)[0]))
    ]
    return jax.tree.map(np.asarray, _stack(aligned))
  model = population.make_model(cohort)
  images = evaluate.splits["train"][0][: config.matching_images]
  x = population.normalize(images, *evaluate.normalization)
  acts = jax.jit(jax.vmap(lambda p: features.layer_outputs(model, p, x)))(
    jax.tree.map(jnp.asarray, params)
  )
  acts = [np.asarray(a) for a in acts]
  aligned = []
  for i in range(len(acts[0])):
    perms = weights.activation_matching([a[ref] for a in acts], [a[i] for a in acts])
    aligned.append(_take(params, i) if i == ref else weights.permute(_take(params, i), perms, spec))
  return jax.tree.map(np.asarray, _stack(aligned))


def _stack(trees: list[Any]) -> Any:
  return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def _take(tree: Any, i: int) -> Any:
  return jax.tree.map(lambda x: x[i], tree)


def _mean(tree: Any, index) -> Any:
  return jax.tree.map(lambda x: np.asarray(x)[np.asarray(index)].mean(0), tree)


def greedy_soup(params: Any, val_acc: np.ndarray, evaluate: Callable[[Any], float]) -> list[int]:
  """Indices of the greedy soup: by validation accuracy, each kept if the soup's accuracy does not drop."""
  order = np.argsort(-val_acc, kind="stable")
  soup, best = [int(order[0])], float(val_acc[order[0]])
  for i in order[1:]:
    acc = evaluate(_mean(params, soup + [int(i)]))
    if acc >= best:
      soup, best = soup + [int(i)], acc
  return soup


def ties_merge(task_vectors: np.ndarray, density: float) -> np.ndarray:
  """TIES-merging of flat task vectors [M, n] -> [n]: trim each to its top `density` fraction of
  magnitudes, elect the sign of each weight by its summed trimmed mass, average the agreeing entries."""
  m, n = task_vectors.shape
  keep = max(1, int(round(density * n)))
  threshold = -np.sort(-np.abs(task_vectors), axis=1)[:, keep - 1 : keep]
  trimmed = np.where(np.abs(task_vectors) >= threshold, task_vectors, 0.0)
  sign = np.sign(trimmed.sum(0))
  agree = (np.sign(trimmed) == sign) & (trimmed != 0)
  return np.where(agree, trimmed, 0.0).sum(0) / np.maximum(agree.sum(0), 1)


def interpolate(a: Any, b: Any, alphas: np.ndarray) -> Any:
  """(1 - alpha) a + alpha b for each alpha: params [len(alphas), ...]."""
  return jax.tree.map(
    lambda x, y: (
      (1 - alphas.reshape((-1,) + (1,) * x.ndim)) * x[None]
      + alphas.reshape((-1,) + (1,) * x.ndim) * y[None]
    ),
    a,
    b,
  )


def barrier_curve(a: Any, b: Any, evaluate: _Evaluator, num_points: int) -> pd.DataFrame:
  """Loss and accuracy on the train and test splits along the line from a to b, with the barrier:
  loss minus the straight line between the end points' losses."""
  alphas = np.linspace(0.0, 1.0, num_points)
  path = interpolate(a, b, alphas)
  out = {"alpha": alphas}
  for split in ("train", "test"):
    loss, acc = evaluate(path, split)
    out[f"{split}_loss"], out[f"{split}_acc"] = loss, acc
    out[f"{split}_barrier"] = loss - ((1 - alphas) * loss[0] + alphas * loss[-1])
  return pd.DataFrame(out)


def _flat(tree: Any) -> np.ndarray:
  return np.asarray(weights.flatten(jax.tree.map(jnp.asarray, tree))[0])


def merge_and_evaluate(
  config: ml_collections.ConfigDict, zoo_dir: str, workdir: str
) -> pd.DataFrame:
  """Merges the selected models every configured way, writes the merged zoo and the tables; returns the summary."""
  validate_config(config)
  zoo = zoo_lib.Zoo(zoo_dir)
  rows = _selection(zoo, config)
  ids = rows["model_id"].to_numpy()
  params = jax.tree.map(np.asarray, zoo.params(ids, config.epoch))
  spec = weights.make_spec(_take(params, 0))
  cohort = grid.cohort_of(rows.iloc[0])
  evaluate = _Evaluator(zoo, cohort, config.eval_size, config.seed)
  val_acc = evaluate(params, "validation")[1]
  val_of = lambda tree: float(evaluate(_stack([tree]), "validation")[1][0])
  ref = int(np.argmax(val_acc))
  aligned = _align_to(params, ref, spec, config, cohort, evaluate)

  merged: list[tuple[str, list[int], Any]] = []  # (method, ingredient positions, params)
  every = list(range(len(ids)))
  if "uniform_soup" in config.methods:
    merged.append(("uniform_soup", every, _mean(params, every)))
  if "greedy_soup" in config.methods:
    soup = greedy_soup(params, val_acc, val_of)
    merged.append(("greedy_soup", soup, _mean(params, soup)))
  if "aligned_average" in config.methods:
    merged.append(("aligned_average", every, _mean(aligned, every)))

  # Clusters by aligned distance (every model matched to the reference), Model-GLUE style.
  flat_naive, flat_aligned = _flat(params), _flat(aligned)
  distance = scipy.spatial.distance.pdist(flat_aligned)
  k = min(config.clustering.num_clusters, len(ids))
  cluster = scipy.cluster.hierarchy.fcluster(
    scipy.cluster.hierarchy.linkage(distance, "average"), k, "maxclust"
  )
  clusters = pd.DataFrame(
    {
      "model_id": ids,
      "cluster": cluster,
      "naive_distance_to_reference": np.linalg.norm(flat_naive - flat_naive[ref], axis=1),
      "aligned_distance_to_reference": np.linalg.norm(flat_aligned - flat_aligned[ref], axis=1),
      "validation_acc": val_acc,
    }
  )
  if "clusters" in config.methods:
    for c in np.unique(cluster):
      members = [int(i) for i in np.flatnonzero(cluster == c)]
      if len(members) > 1:
        merged.append((f"cluster_{c}", members, _mean(aligned, members)))

  ancestor_dir = config.ancestor or os.path.join(zoo_dir, finetune.ANCESTOR_DIR)
  if {"task_arithmetic", "ties"} & set(config.methods) and os.path.isdir(ancestor_dir):
    ancestor_zoo = zoo_lib.Zoo(ancestor_dir)
    ancestor = jax.tree.map(lambda x: np.asarray(x)[0], ancestor_zoo.params([0], -1))
    flat0, unflatten = (
      _flat(_stack([ancestor]))[0],
      lambda v: jax.tree.map(np.asarray, weights.unflatten(jnp.asarray(v, jnp.float32), spec)),
    )
    tau = flat_naive - flat0
    vectors = {"task_arithmetic": tau.sum(0), "ties": ties_merge(tau, config.ties.density)}
    for method in ("task_arithmetic", "ties"):
      if method in config.methods:
        candidates = [unflatten(flat0 + s * vectors[method]) for s in config.scales]
        accs = evaluate(_stack(candidates), "validation")[1]
        best = int(np.argmax(accs))
        merged.append((method + f"_lambda_{config.scales[best]:g}", every, candidates[best]))
  elif {"task_arithmetic", "ties"} & set(config.methods):
    print(f"No ancestor at {ancestor_dir}: task arithmetic and TIES skipped (set config.ancestor).")

  # Loss barriers between the reference and the next models, naive and aligned.
  curves, barriers = [], []
  others = [i for i in range(len(ids)) if i != ref][: config.interpolation.num_pairs]
  for i in others:
    for alignment, b in (("naive", _take(params, i)), ("aligned", _take(aligned, i))):
      curve = barrier_curve(_take(params, ref), b, evaluate, config.interpolation.num_points)
      curves.append(curve.assign(model_a=ids[ref], model_b=ids[i], alignment=alignment))
      mid = curve.iloc[(len(curve) - 1) // 2]
      barriers.append(
        {
          "model_a": int(ids[ref]),
          "model_b": int(ids[i]),
          "alignment": alignment,
          "midpoint_train_barrier": float(mid["train_barrier"]),
          "midpoint_test_barrier": float(mid["test_barrier"]),
          "max_train_barrier": float(curve["train_barrier"].max()),
          "max_test_barrier": float(curve["test_barrier"].max()),
          "midpoint_test_acc": float(mid["test_acc"]),
        }
      )
    mid_index = (config.interpolation.num_points - 1) // 2
    alpha = np.linspace(0.0, 1.0, config.interpolation.num_points)[mid_index]
    for alignment, b in (("naive", _take(params, i)), ("aligned", _take(aligned, i))):
      merged.append(
        (
          f"{alignment}_midpoint_{ids[ref]}_{ids[i]}",
          [ref, i],
          _take(interpolate(_take(params, ref), b, np.array([alpha])), 0),
        )
      )

  # Ingredients and merges as one zoo, evaluated by the training engine (num_epochs=0).
  os.makedirs(workdir, exist_ok=True)
  zoo_lib.write_json_atomic(
    {"zoo": os.path.abspath(zoo_dir), **json.loads(config.to_json())},
    os.path.join(workdir, MERGE_CONFIG_FILE),
  )
  base = rows.iloc[ref].drop(["model_id", "cohort", "cohort_index"])
  table_rows = [
    dict(base, seed=int(rows.iloc[i]["seed"]), method="ingredient", ingredients=str(ids[i]))
    for i in range(len(ids))
  ]
  table_rows += [
    dict(base, method=m, ingredients=";".join(str(ids[i]) for i in members))
    for m, members, _ in merged
  ]
  table = grid.index_models(pd.DataFrame(table_rows))
  all_params = jax.tree.map(
    lambda *xs: np.concatenate(xs), params, _stack([p for _, _, p in merged])
  )
  run = train_config.stored_config(zoo_dir)
  run.num_epochs, run.overwrite, run.progress_bar = 0, False, False
  result = train.train_and_evaluate(
    run,
    workdir,
    models_table=table,
    initial_params=lambda r: jax.tree.map(lambda x: x[r["model_id"].to_numpy()], all_params),
  )

  at0 = result.metrics[result.metrics["epoch"] == 0].merge(
    result.models[["model_id", "method", "ingredients"]], on="model_id"
  )
  ingredients = at0[at0["method"] == "ingredient"]
  summary = at0[["method", "ingredients", "validation_acc", "test_acc", "test_loss"]].copy()
  summary["mean_ingredient_test_acc"] = float(ingredients["test_acc"].mean())
  summary["best_ingredient_test_acc"] = float(ingredients["test_acc"].max())
  zoo_lib.write_table_atomic(summary, os.path.join(workdir, SUMMARY_FILE))
  zoo_lib.write_table_atomic(clusters, os.path.join(workdir, CLUSTERS_FILE))
  if curves:
    zoo_lib.write_table_atomic(
      pd.concat(curves, ignore_index=True), os.path.join(workdir, BARRIER_FILE)
    )
    plots.merge_barriers(pd.concat(curves, ignore_index=True), os.path.join(workdir, PLOT_FILE))
  zoo_lib.write_json_atomic(
    {
      "barriers": barriers,
      "clusters": {int(c): ids[cluster == c].tolist() for c in np.unique(cluster)},
      "reference_model": int(ids[ref]),
    },
    os.path.join(workdir, SUMMARY_JSON),
  )
  return summary


if __name__ == "__main__":
  from absl import flags
  from ml_collections import config_flags

  from zoo_jax import cli

  _CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/merge.py or alike.", lock_config=True
  )
  _ZOO = flags.DEFINE_string("zoo", None, "The zoo whose models are merged.")
  _WORKDIR = flags.DEFINE_string("workdir", None, "Where the merged zoo and the tables go.")
  flags.mark_flags_as_required(["config", "zoo", "workdir"])

  def main(argv):
    del argv
    print(merge_and_evaluate(_CONFIG.value, _ZOO.value, _WORKDIR.value).to_string(index=False))

  cli.run(main)
