"""Merge a zoo's models: soups, weight-matched averages, task arithmetic, TIES, clusters, loss barriers.

  python -m zoo_jax.merge --config=configs/merge.py --zoo=ZOO --workdir=OUT

The selected models (one architecture and activation; `config.select` filters the models table)
at `config.epoch` are merged in weight space by each method of `config.methods`, in its order:
  uniform_soup       the plain average of every model (Wortsman et al., 2022)
  greedy_soup        models in order of validation accuracy, each kept if the soup's validation
                     accuracy does not drop
  aligned_average    every model aligned to the best one, then averaged: the merge of independently
                     seeded models (Ainsworth et al., 2023); `config.alignment` "weights" (weight
                     matching) or "activations" (unit outputs on training images matched), both in
                     zoo_jax.weights.matching
  clusters           the aligned average within each cluster of a hierarchical clustering by
                     aligned weight distance, one model cluster_<k> per cluster (Model-GLUE's first
                     step: merge only what is close)
  task_arithmetic    ancestor + lambda * sum of task vectors (Ilharco et al., 2023), lambda by validation
  ties               ancestor + lambda * TIES-merged task vectors (Yadav et al., 2023): trim to the
                     top `ties.density` magnitudes, elect each weight's sign, average the agreeing ones
  glue               Model-GLUE (Zhao et al., 2024): the models clustered by weight distance, each
                     cluster merged by the best of `config.glue.strategies` on validation, one model
                     glue_<k>_<method> per cluster; the clusters then integrated without merging them:
                     a learned router (a model-level mixture) and stacking (zoo_jax.reuse.mixture)
The last two and glue's task-vector candidates need the ancestor the models were fine-tuned from:
`config.ancestor`, or ZOO/ancestor (what zoo_jax.finetune writes), each model's found by its
`source_model`; over models of different ancestors task arithmetic and TIES are skipped. OUT is a
zoo (zoo_jax.zoo.Zoo reads it; written by the training engine with num_epochs=0, which evaluates
the given weights): the ingredients and every merge, the models table naming each row's `method`
and `ingredients`; plus
  merge_summary.csv  method, ingredients, validation and test accuracy, vs the mean and best ingredient
  barrier.csv        loss and accuracy along the straight line between model pairs, naive and aligned
  clusters.csv       each model's cluster and its naive and aligned distance to the reference model
  merge_summary.json the midpoint and maximum loss barriers per pair, the clusters, what was read
  run.json           the config, the zoo and what was read from it (zoo_jax.zoo.guard): a rerun resumes,
                     computes again from a zoo that grew (config.epoch negative), or is refused
  barrier.png        the interpolation curves
  glue.csv           with glue: every ingredient, merge, the mixture and the stacking scored on the
                     same test images, overall and per domain (a zoo evaluated on several domains),
                     beside the experts' plain ensemble and routing by the true domain (a ceiling);
                     routing.csv where the router sends each domain's images; glue.png the table
Each merge method is a file of zoo_jax/reuse/mergers/ (its contract in that package's docstring), the
shared math zoo_jax.reuse.merging; this module is the command: selection, the computations every
method shares, the loss barriers, evaluation through the engine and the outputs.
"""

if __name__ == "__main__":
  # The workdir's writer lock before the slow imports below (jax, orbax: seconds).
  from zoo_jax import cli as _cli

  _cli.lock_workdir_early()

import json
import os

import jax
import ml_collections
import numpy as np
import pandas as pd

from zoo_jax import plots, train, weights, zoo as zoo_lib
from zoo_jax.engine import grid, train_config
from zoo_jax.zoo import guard
from zoo_jax.reuse import finetuning, mergers, merging, mixture
from zoo_jax.reuse.mergers import glue

SUMMARY_FILE, SUMMARY_JSON, BARRIER_FILE, CLUSTERS_FILE, PLOT_FILE = (
  "merge_summary.csv",
  "merge_summary.json",
  "barrier.csv",
  "clusters.csv",
  "barrier.png",
)
GLUE_FILE, ROUTING_FILE, GLUE_PLOT = ("glue.csv", "routing.csv", "glue.png")
# Everything a run writes besides its record (run.json): what a rerun on a grown zoo recomputes.
OUTPUTS = (
  SUMMARY_FILE,
  SUMMARY_JSON,
  BARRIER_FILE,
  CLUSTERS_FILE,
  PLOT_FILE,
  GLUE_FILE,
  ROUTING_FILE,
  GLUE_PLOT,
  *zoo_lib.ZOO_FILES,
)
ALIGNMENTS = ("weights", "activations")
GLUE_CHOICES = ("competence", "all")  # the validation images each cluster's merge is chosen on
METHODS = mergers.names()  # one per file of zoo_jax/reuse/mergers/


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
  if "glue" in config.methods:
    allowed = [m for m in METHODS if m not in ("glue", "clusters")]
    bad = [m for m in config.glue.strategies if m not in allowed]
    if bad or not config.glue.strategies:
      raise ValueError(
        f"config.glue.strategies has {bad or 'nothing'}; name some of {allowed} (each cluster's "
        "merge is chosen among them on validation)."
      )
    if config.glue.choose_on not in GLUE_CHOICES:
      raise ValueError(
        f"config.glue.choose_on {config.glue.choose_on!r} is unknown; allowed values: "
        f"{list(GLUE_CHOICES)}."
      )
    if not isinstance(config.glue.num_clusters, int) or config.glue.num_clusters < 1:
      raise ValueError(
        f"config.glue.num_clusters must be an integer >= 1, got {config.glue.num_clusters!r}."
      )
    for field in ("steps", "learning_rate"):
      if not config.glue.router[field] > 0:
        raise ValueError(
          f"config.glue.router.{field} must be > 0, got {config.glue.router[field]!r}."
        )


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


def _ancestors(ancestor_dir: str, rows: pd.DataFrame) -> tuple[object, np.ndarray | None]:
  """Each selected model's ancestor [M, ...] and the ancestors' ids [M]: the models table's
  `source_model` in the ancestor zoo (config.ancestor, or ZOO/ancestor); (None, None) without one."""
  if not os.path.isdir(ancestor_dir):
    return None, None
  ancestor_zoo = zoo_lib.Zoo(ancestor_dir)
  try:
    if len(ancestor_zoo.models) == 1 or "source_model" not in rows.columns:
      source = np.zeros(len(rows), int)  # one ancestor: every model's
    else:
      source = rows["source_model"].to_numpy(int)
      unknown = sorted(set(source) - set(ancestor_zoo.models["model_id"]))
      if unknown:
        raise ValueError(
          f"The models table's source_model names models {unknown} that the ancestor zoo "
          f"{ancestor_dir} lacks; set config.ancestor to the zoo the models were fine-tuned from."
        )
    unique, inverse = np.unique(source, return_inverse=True)
    params = ancestor_zoo.params(unique, -1)
    return jax.tree.map(lambda x: np.asarray(x)[inverse], params), source
  finally:
    ancestor_zoo.close()


def _integrate(
  config: ml_collections.ConfigDict,
  evaluate: merging.Evaluator,
  models: pd.DataFrame,
  params,
  experts: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
  """Model-GLUE's integration: the router and the stacking fitted on the validation images, every
  model (ingredient or merged) and both integrations scored on the same test images, per domain.
  Returns (the table, the routing: each domain's test images' share per expert, the summary)."""
  feats, log_probs, labels = {}, {}, {}
  for split in ("validation", "test"):
    f, z = evaluate.outputs(params, split)
    feats[split], log_probs[split] = f[experts], mixture.log_softmax(z)
    labels[split] = np.asarray(evaluate.splits[split][1])
  pred = {split: lp.argmax(-1) for split, lp in log_probs.items()}  # every model's [P, N]
  expert = {split: lp[experts] for split, lp in log_probs.items()}  # the experts' [E, N, K]
  r = config.glue.router
  router = mixture.fit_router(
    feats["validation"],
    expert["validation"],
    labels["validation"],
    steps=r.steps,
    learning_rate=r.learning_rate,
    weight_decay=r.weight_decay,
    seed=config.seed,
  )
  gates = router.gates(feats["test"])
  stacker = mixture.fit_stacking(expert["validation"], labels["validation"])
  domain, names = evaluate.domains["test"], evaluate.domain_names
  val_domain = evaluate.domains["validation"]

  def row(method, ingredients, kind, val_pred, test_pred):
    out = {"method": method, "ingredients": ingredients, "kind": kind}
    out["validation_acc"] = (
      np.nan if val_pred is None else float(np.mean(val_pred == labels["validation"]))
    )
    correct = test_pred == labels["test"]
    out["test_acc"] = float(correct.mean())
    for d, name in enumerate(names):
      out[f"test_acc_{name}"] = float(correct[domain == d].mean())
    return out

  rows = [
    row(
      model["method"],
      model["ingredients"],
      "ingredient" if model["method"] == "ingredient" else "merged",
      pred["validation"][i],
      pred["test"][i],
    )
    for i, model in models.iterrows()
  ]
  # The integrations and the references are fitted on (or read) the validation images: no
  # validation accuracy of their own. References: the experts' plain ensemble (equal gates), and
  # routing by the true domain to the expert best on that domain's validation images (a ceiling:
  # it reads the domain labels).
  equal = np.full_like(gates, 1.0 / len(experts))
  oracle = np.zeros_like(labels["test"])
  for d in range(len(names)):
    right = pred["validation"][experts][:, val_domain == d] == labels["validation"][val_domain == d]
    oracle[domain == d] = pred["test"][experts[int(np.argmax(right.mean(1)))]][domain == d]
  expert_names = models.loc[experts, "method"].tolist()
  integrated = {
    "mixture": ("mixture", mixture.mixture_log_probs(gates, expert["test"]).argmax(-1)),
    "stacking": ("stacking", mixture.stacking_predict(stacker, expert["test"])),
    "expert_ensemble": ("reference", mixture.mixture_log_probs(equal, expert["test"]).argmax(-1)),
    "oracle_routing": ("reference", oracle),
  }
  for method, (kind, test_pred) in integrated.items():
    rows.append(row(method, ";".join(expert_names), kind, None, test_pred))
  table = pd.DataFrame(rows)
  routing = pd.DataFrame(
    [
      {"domain": name, **dict(zip(expert_names, gates[domain == d].mean(0).round(4)))}
      for d, name in enumerate(names)
    ]
  )
  merged = table[table["kind"] == "merged"]
  by_validation = merged.iloc[int(np.argmax(merged["validation_acc"].to_numpy()))]
  best = merged.iloc[int(np.argmax(merged["test_acc"].to_numpy()))]
  accuracy = table.set_index("method")["test_acc"]
  summary = {
    **{f"{method}_test_acc": float(accuracy[method]) for method in integrated},
    "best_merged": {"method": best["method"], "test_acc": float(best["test_acc"])},
    "merged_chosen_on_validation": {
      "method": by_validation["method"],
      "test_acc": float(by_validation["test_acc"]),
    },
    "best_ingredient_test_acc": float(table.loc[table["kind"] == "ingredient", "test_acc"].max()),
    "experts": expert_names,
    "domains": list(names),
  }
  return table, routing, summary


def merge_and_evaluate(
  config: ml_collections.ConfigDict, zoo_dir: str, workdir: str
) -> pd.DataFrame:
  """Merges the selected models every configured way, writes the merged zoo and the tables; returns the summary."""
  validate_config(config)
  with guard.writing(workdir):  # the lock first, before the zoo is read
    zoo = zoo_lib.Zoo(zoo_dir)
    try:
      return _merge_and_evaluate(config, zoo, workdir)
    finally:
      zoo.close()


def _merge_and_evaluate(
  config: ml_collections.ConfigDict, zoo: zoo_lib.Zoo, workdir: str
) -> pd.DataFrame:
  zoo_dir = zoo.workdir
  rows = _selection(zoo, config)
  ids = rows["model_id"].to_numpy()
  # Inputs read and checked: the workdir is claimed (or found to be this run's, or refused).
  read = [guard.read_models(zoo, ids, [zoo._epoch(config.epoch)])]
  guard.claim(
    workdir,
    {"command": "merge", "config": json.loads(config.to_json()), "zoo": os.path.abspath(zoo_dir)},
    read=read,
    follow_newest=config.epoch < 0,
    outputs=OUTPUTS,
    record_file=guard.RUN_FILE,
    holds="another merge (another config or zoo)",
  )
  print(f"read {guard.describe(read)}")
  params = jax.tree.map(np.asarray, zoo.params(ids, config.epoch))
  spec = weights.make_spec(merging.take(params, 0))
  cohort = grid.cohort_of(rows.iloc[0])
  evaluate = merging.Evaluator(zoo, cohort, config.eval_size, config.seed)
  val_acc = evaluate(params, "validation")[1]
  ref = int(np.argmax(val_acc))
  aligned = merging.align_to(params, ref, spec, config, cohort, evaluate)

  # Clusters by aligned distance (every model matched to the reference), Model-GLUE style.
  flat_naive, flat_aligned = merging.flat(params), merging.flat(aligned)
  cluster = merging.cluster(flat_aligned, config.clustering.num_clusters)
  clusters = pd.DataFrame(
    {
      "model_id": ids,
      "cluster": cluster,
      "naive_distance_to_reference": np.linalg.norm(flat_naive - flat_naive[ref], axis=1),
      "aligned_distance_to_reference": np.linalg.norm(flat_aligned - flat_aligned[ref], axis=1),
      "validation_acc": val_acc,
    }
  )

  # The merge methods of zoo_jax/reuse/mergers/, in the order of config.methods.
  methods = list(dict.fromkeys(config.methods))
  ancestor_dir = config.ancestor or os.path.join(zoo_dir, finetuning.ANCESTOR_DIR)
  ancestors, source = _ancestors(ancestor_dir, rows)
  need_ancestor = [m for m in methods if mergers.needs_ancestor(m)]
  if need_ancestor and (ancestors is None or len(np.unique(source)) > 1):
    why = (
      "the selection's models were fine-tuned from different ancestors (a per-cluster choice, the "
      "glue method, uses them within each cluster)"
      if ancestors is not None
      else f"no ancestor at {ancestor_dir} (set config.ancestor)"
    )
    print(f"{' and '.join(need_ancestor)} skipped: {why}.")
    methods = [m for m in methods if m not in need_ancestor]
  context = mergers.Context(
    config=config,
    params=params,
    aligned=aligned,
    flat=flat_naive,
    validation_acc=val_acc,
    reference=ref,
    cluster=cluster,
    spec=spec,
    evaluate=evaluate,
    ancestors=ancestors,
    source=source,
  )
  merged: list[mergers.Merged] = []
  for method in methods:
    merged.extend(mergers.get(method).merge(context))

  # Loss barriers between the reference and the next models, naive and aligned.
  curves, barriers = [], []
  others = [i for i in range(len(ids)) if i != ref][: config.interpolation.num_pairs]
  for i in others:
    for alignment, b in (("naive", merging.take(params, i)), ("aligned", merging.take(aligned, i))):
      curve = merging.barrier_curve(
        merging.take(params, ref), b, evaluate, config.interpolation.num_points
      )
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
    for alignment, b in (("naive", merging.take(params, i)), ("aligned", merging.take(aligned, i))):
      merged.append(
        mergers.Merged(
          f"{alignment}_midpoint_{ids[ref]}_{ids[i]}",
          [ref, i],
          merging.take(merging.interpolate(merging.take(params, ref), b, np.array([alpha])), 0),
        )
      )

  # Ingredients and merges as one zoo, evaluated by the training engine (num_epochs=0).
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
    lambda *xs: np.concatenate(xs), params, merging.stack([p for _, _, p in merged])
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
  glue_summary = None
  experts = result.models.index[result.models["method"].str.startswith(glue.PREFIX)].to_numpy()
  if len(experts) > 1:  # Model-GLUE's integration of the merged clusters: mixture and stacking
    glue_table, routing, glue_summary = _integrate(
      config, evaluate, result.models, all_params, experts
    )
    zoo_lib.write_table_atomic(glue_table, os.path.join(workdir, GLUE_FILE))
    zoo_lib.write_table_atomic(routing, os.path.join(workdir, ROUTING_FILE))
    plots.glue_accuracy(glue_table, os.path.join(workdir, GLUE_PLOT))
  elif "glue" in methods:
    print("glue: fewer than two clusters, nothing to integrate (config.glue.num_clusters).")
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
      "glue": glue_summary,
      "read": read,
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
