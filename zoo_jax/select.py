"""Rank a zoo's models for a new target without fine-tuning them, and check against fine-tuning.

  python -m zoo_jax.select --config=configs/select.py --zoo=ZOO --target=DATASET --workdir=OUT
  python -m zoo_jax.select --config=configs/zood.py --zoo=ZOO --workdir=OUT     (across domains)

Every usable zoo model (status ok at `config.epoch`) is scored for the target by each method:
  logme, hscore, ncc   feature scores (zoo_jax.reuse.scores, one file each) of its penultimate features
                       on `probe_size` target training images (one forward pass, no training)
  zero_shot            the accuracy of its own head on those images (10 classes -> 10 classes)
  source_acc           its validation accuracy on the zoo's own dataset (no target data; free)
  short_finetune       its validation accuracy after a short fine-tune on the target
                       (`short_finetune.num_epochs` epochs on `train_size` images, other seeds than
                       the brute force's): a proxy that trains, so not a cheap one
  learned              a regressor from the model's StatNN weight embedding and its model-task
                       scores (logme, hscore, ncc, zero_shot) to fine-tuned accuracy, trained on
                       `learned.train_tasks` (other datasets; never the target), where the zoo was
                       brute-force fine-tuned once
  spider               Model Spider (zoo_jax.reuse.spider): model tokens (weights) and task tokens
                       (one probe model's features), a fitness head trained to rank on the same
                       tasks, the top `spider.rerank_k` re-ranked with their own features: only
                       the probe model and those candidates see the target
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
  finetune/       the brute-force zoo (finetune_repeat/: its second run; short_finetune/: the
                  short fine-tune's); tasks/<name>/ the learned rankers' training tasks
                  (config.learned.tasks_dir: elsewhere, shared by runs)

A config with a `domains` section (configs/zood.py) selects across domains instead, as ZooD does
(zoo_jax.reuse.zood), with no --target: the training domains are the family's domains but the
held-out one, which only the final evaluation reads. Every model is scored on the training domains
(zood: stability leave-one-domain-out; ncc, logme on their union; source_acc); the top-K by zood are
concatenated, their features selected and a linear head fitted on the training domains; every
model is also fine-tuned on the training domains' union (brute force). OUT holds:
  ranking.csv     model_id, hyperparameters, each score, probe_val_acc / probe_heldout_acc (a linear
                  head on the model's own features), finetuned_val_acc and finetuned_acc (the
                  fine-tuned model on the training domains' validation images / on the unseen domain)
  summary.json    "ood_accuracy" on the unseen domain: zood_ensemble, zood_ensemble_all_features,
                  ncc_ensemble (members ranked by NCC), zood_top1, best_single (the best linear head on the training domains), brute_force
                  (the fine-tuned model best on the training domains), finetuned_oracle; "methods":
                  each score's Kendall tau against finetuned_acc, seconds and ratio to brute force;
                  the selected features
  ranking.png     each score against finetuned_acc
  run.json, finetune/ as above
The scores, the brute force, the learned ranker and the ensembles are library functions of
zoo_jax.reuse.ranking and zoo_jax.reuse.zood; this module is the command: its checks, its flow and
its outputs.
"""

if __name__ == "__main__":
  # The workdir's writer lock before the slow imports below (jax, orbax: seconds).
  from zoo_jax import cli as _cli

  _cli.lock_workdir_early()

import json
import os
import time

import ml_collections
import numpy as np
import pandas as pd

from zoo_jax import data, plots, zoo as zoo_lib
from zoo_jax.data import domains as domains_lib
from zoo_jax.engine import grid
from zoo_jax.reuse import finetuning, ranking as ranking_lib, scores, zood
from zoo_jax.zoo import guard

FEATURE_METHODS = scores.names()  # one per file of zoo_jax/reuse/scores/
TRAINED_METHODS = ("learned", "spider")  # rankers trained on config.learned.train_tasks
METHODS = FEATURE_METHODS + ("zero_shot", "source_acc", "short_finetune") + TRAINED_METHODS
RANKING_FILE, SUMMARY_FILE, ENSEMBLES_FILE, PLOT_FILE = (
  "ranking.csv",
  "summary.json",
  "ensembles.csv",
  "ranking.png",
)
FINETUNE_DIR = "finetune"
REPEAT_DIR = "finetune_repeat"  # the brute force again, other seeds: the noise ceiling
SHORT_DIR = "short_finetune"  # the short fine-tune (the short_finetune method)
# Everything a run writes besides its record (run.json): what a rerun on a grown zoo recomputes.
OUTPUTS = (
  RANKING_FILE,
  SUMMARY_FILE,
  ENSEMBLES_FILE,
  PLOT_FILE,
  FINETUNE_DIR,
  REPEAT_DIR,
  SHORT_DIR,
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
  trained = [m for m in TRAINED_METHODS if m in config.methods]
  if trained:
    if target in config.learned.train_tasks:
      raise ValueError(
        f"config.learned.train_tasks contains the target {target!r}; the learned rankers must "
        "not see the target's fine-tuning results."
      )
    if len(config.learned.train_tasks) < (2 if "spider" in trained else 1):
      raise ValueError(
        f"config.learned.train_tasks has {len(config.learned.train_tasks)} task(s); "
        + ("spider needs at least 2." if "spider" in trained else "learned needs at least 1.")
      )
  if "short_finetune" in config.methods:
    short = config.short_finetune
    if not isinstance(short.num_epochs, int) or short.num_epochs < 1:
      raise ValueError(
        f"config.short_finetune.num_epochs must be an integer >= 1, got {short.num_epochs!r}."
      )
    if short.train_size is not None and (
      not isinstance(short.train_size, int) or short.train_size < 1
    ):
      raise ValueError(
        f"config.short_finetune.train_size must be a positive integer or None, got "
        f"{short.train_size!r}."
      )
  if config.spider.rerank_k < 0 or config.spider.steps < 1:
    raise ValueError(
      f"config.spider.rerank_k must be >= 0 and config.spider.steps >= 1, got "
      f"{config.spider.rerank_k!r} and {config.spider.steps!r}."
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
  config: ml_collections.ConfigDict, zoo_dir: str, target: str | None, workdir: str
) -> dict:
  """Scores the zoo's models for `target` by every method, fine-tunes them, writes OUT; returns the
  summary. A config with a `domains` section selects across domains (ZooD) and takes no target."""
  across_domains = "domains" in config
  if across_domains and target is not None:
    raise ValueError(
      f"--target {target!r} with a domains config: the target is config.domains.heldout; "
      "drop --target."
    )
  if not across_domains and target is None:
    raise ValueError(
      "--target is required (a dataset name) unless the config has a domains section."
    )
  with guard.writing(workdir):  # the lock first, before the zoo is read
    zoo = zoo_lib.Zoo(zoo_dir)
    try:
      if across_domains:
        return _select_across_domains(config, zoo, workdir)
      return _select_and_evaluate(config, zoo, target, workdir)
    finally:
      zoo.close()


def validate_domains_config(config: ml_collections.ConfigDict, zoo_dataset: str) -> tuple[str, ...]:
  """Checks a domains config (configs/zood.py) against the zoo's dataset; the training domains."""
  names = config.domains.get("names")
  field = "config.domains.names" if names else "config.domains.family"
  family = domains_lib.family(names or config.domains.family)
  domains_lib.check(family, field, image_shape_of=zoo_dataset)
  if config.domains.heldout not in family:
    raise ValueError(
      f"config.domains.heldout {config.domains.heldout!r} is not a domain of {field}; "
      f"allowed values: {list(family)}."
    )
  train_domains = tuple(d for d in family if d != config.domains.heldout)
  if len(train_domains) < 2:
    raise ValueError(
      f"{field} has {len(train_domains)} training domain(s) besides the held-out one; "
      "leave-one-domain-out needs at least 2."
    )
  for field in ("probe_size", "eval_size", "top_k", "finetune.num_epochs"):
    value = config.finetune.num_epochs if field.startswith("finetune") else config[field]
    if not isinstance(value, int) or value < (2 if field == "probe_size" else 1):
      raise ValueError(f"config.{field} must be a positive integer, got {value!r}.")
  if not 0.0 < config.selection.threshold < 1.0:
    raise ValueError(
      f"config.selection.threshold must be in (0, 1), got {config.selection.threshold!r}."
    )
  return train_domains


def _select_across_domains(
  config: ml_collections.ConfigDict, zoo: zoo_lib.Zoo, workdir: str
) -> dict:
  zoo_dir, zoo_dataset = zoo.workdir, zoo.config["dataset"]["name"]
  train_domains = validate_domains_config(config, zoo_dataset)
  heldout = config.domains.heldout
  ids, epoch, read = _claim(
    config,
    zoo,
    workdir,
    {},
    "another selection (another config, zoo or domains)",
    config.num_models,
  )
  print(f"read {guard.describe(read)}; training domains {list(train_domains)}, unseen {heldout}")
  load = lambda d, size, split: ranking_lib.probe_images(d, size, config.seed, split)
  fit = [load(d, config.probe_size, "train") for d in train_domains]
  # Evaluation images: the training domains' validation (choosing) and the unseen domain's test.
  val = [load(d, config.eval_size, "validation") for d in train_domains]
  test = load(heldout, config.eval_size, "test")
  start = time.time()
  feats = zood.domain_features(zoo, ids, epoch, fit)  # per training domain [M, N_d, D]
  forward = time.time() - start  # counted in every method's seconds
  *val_feats, test_feats = zood.domain_features(zoo, ids, epoch, val + [test])  # evaluation only
  val_feats = np.concatenate(val_feats, axis=1)
  ys, y_val = [d.labels for d in fit], np.concatenate([d.labels for d in val])
  pooled = np.concatenate(feats, axis=1)  # [M, sum N_d, D]
  y_pooled = np.concatenate(ys)
  table = pd.DataFrame({"model_id": ids})
  seconds = {}
  for name, fn in (
    ("zood", lambda m: zood.zood_score([f[m] for f in feats], ys)),
    ("ncc", lambda m: scores.get("ncc")(pooled[m], y_pooled)),
    ("logme", lambda m: scores.get("logme")(pooled[m], y_pooled)),
  ):
    start = time.time()
    table[name] = [fn(m) for m in range(len(ids))]
    seconds[name] = forward + time.time() - start
  at = zoo.metrics[zoo.metrics["epoch"] == epoch].set_index("model_id").loc[ids]
  table["source_acc"] = at["validation_acc"].to_numpy()
  seconds["source_acc"] = 0.0

  def evaluate(cols: list[tuple[int, np.ndarray]]) -> list[float]:
    """(validation, unseen-domain) accuracy of a linear head on the features `cols`: (model, columns)
    pairs, concatenated, fitted on the training domains."""
    take = lambda x: np.concatenate([x[m][:, c] for m, c in cols], axis=1)
    return zood.probe_accuracy(
      take(pooled), y_pooled, [take(val_feats), take(test_feats)], [y_val, test.labels], config.seed
    )

  # ZooD: the top-K by score, features concatenated, selected, one linear head.
  width = pooled.shape[-1]

  def ensemble(score: str) -> tuple[float, np.ndarray, np.ndarray]:
    """(unseen-domain accuracy, models, kept features) of the top-K by `score`, features selected."""
    top = np.argsort(-table[score].to_numpy(), kind="stable")[: config.top_k]
    concat = np.concatenate([pooled[m] for m in top], axis=1)
    kept = np.ones(concat.shape[1], bool)
    if config.selection.enabled:
      kept, _ = zood.select_features(concat, y_pooled, threshold=config.selection.threshold)
      if not kept.any():  # nothing passes the threshold: the head reads every feature
        print(f"note: no feature of the top-{len(top)} by {score} passes the selection; all kept.")
        kept[:] = True
    cols = [(m, np.flatnonzero(kept[i * width : (i + 1) * width])) for i, m in enumerate(top)]
    return evaluate([(m, c) for m, c in cols if len(c)])[1], top, kept

  start = time.time()
  zood_acc, top, kept = ensemble("zood")
  seconds["zood_ensemble"] = seconds["zood"] + time.time() - start
  ncc_acc = ensemble("ncc")[0]  # the same ensemble, its members ranked by NCC instead
  _, all_acc = evaluate([(m, np.arange(width)) for m in top])
  _, top1_acc = evaluate([(top[0], np.arange(width))])
  # The best single model by a linear head on the training domains: one head per model.
  start = time.time()
  heads = np.array([evaluate([(m, np.arange(width))]) for m in range(len(ids))])
  seconds["best_single"] = forward + time.time() - start
  table["probe_val_acc"], table["probe_heldout_acc"] = heads[:, 0], heads[:, 1]

  # Brute force: every model fine-tuned on the training domains' union, chosen on their validation.
  tuned, bf_seconds, tuned_zoo = ranking_lib.brute_force(
    config, zoo, ids, zoo_dataset, os.path.join(workdir, FINETUNE_DIR), domains=train_domains
  )
  tuned = table[["model_id"]].merge(tuned, on="model_id", how="left")

  def heldout_accuracy(tuned_zoo: zoo_lib.Zoo, tuned_ids: pd.Series) -> np.ndarray:
    _, logits = ranking_lib.population_outputs(
      tuned_zoo, tuned_ids.to_numpy().astype(int), -1, test
    )
    return np.mean(np.argmax(logits, -1) == test.labels[None], axis=1)

  table["finetuned_val_acc"] = tuned["finetuned_val_acc"].to_numpy()
  table["finetuned_acc"] = heldout_accuracy(tuned_zoo, tuned["finetuned_id"])
  hparams = (
    zoo.models.set_index("model_id").loc[ids, list(grid.GRID_FIELDS) + ["seed"]].reset_index()
  )
  table = hparams.merge(table, on="model_id")
  zoo_lib.write_table_atomic(table, os.path.join(workdir, RANKING_FILE))

  chosen = int(np.argmax(table["finetuned_val_acc"].to_numpy()))
  summary = {
    "zoo": os.path.abspath(zoo_dir),
    "target": heldout,
    "training_domains": list(train_domains),
    "models": int(len(ids)),
    "epoch": int(epoch),
    "read": read,
    "ood_accuracy": {
      "zood_ensemble": zood_acc,
      "zood_ensemble_all_features": all_acc,
      "ncc_ensemble": ncc_acc,
      "zood_top1": top1_acc,
      "best_single": float(heads[np.argmax(heads[:, 0]), 1]),
      "brute_force": float(table["finetuned_acc"].iloc[chosen]),
      "finetuned_oracle": float(table["finetuned_acc"].max()),
      "finetuned_mean": float(table["finetuned_acc"].mean()),
    },
    "zood_ensemble": {
      "models": [int(ids[m]) for m in top],
      "features_kept": int(kept.sum()),
      "features": int(kept.size),
    },
    ranking_lib.BRUTE_FORCE: {"seconds": bf_seconds, "num_epochs": config.finetune.num_epochs},
    "seconds": {k: seconds[k] for k in ("zood_ensemble", "best_single")},
    "methods": {},
  }
  for method in ("zood", "ncc", "logme", "source_acc", "probe_val_acc"):
    entry = ranking_lib.ranking_metrics(table[method].to_numpy(), table["finetuned_acc"].to_numpy())
    spent = seconds.get(method, seconds["best_single"])
    entry.update(seconds=spent, ratio_to_brute_force=bf_seconds / spent if spent > 0 else None)
    summary["methods"][method] = entry
  if config.finetune.noise_ceiling:
    summary["noise_ceiling"] = ranking_lib.noise_ceiling(
      config,
      zoo,
      ids,
      zoo_dataset,
      os.path.join(workdir, REPEAT_DIR),
      table["finetuned_acc"].to_numpy(),
      accuracy=lambda tuned_zoo, rows: heldout_accuracy(tuned_zoo, rows["finetuned_id"]),
      domains=train_domains,
    )
  zoo_lib.write_json_atomic(summary, os.path.join(workdir, SUMMARY_FILE))
  plots.selection_ranking(table, summary, os.path.join(workdir, PLOT_FILE))
  return summary


def _claim(
  config: ml_collections.ConfigDict,
  zoo: zoo_lib.Zoo,
  workdir: str,
  record: dict,
  holds: str,
  num_models: int | None = None,
) -> tuple[np.ndarray, int, list]:
  """(model ids, epoch, what was read): the usable models at config.epoch (a seeded subset of
  `num_models`), checked, and the workdir claimed for this run (or found to be its, or refused)."""
  ids = zoo.select(status=zoo_lib.STATUS_OK, epoch=config.epoch)
  if num_models is not None and num_models < len(ids):
    ids = np.sort(np.random.default_rng(config.seed).choice(ids, num_models, replace=False))
  if len(ids) < 2:
    raise ValueError(
      f"Zoo {zoo.workdir} has {len(ids)} usable models at epoch {config.epoch}; ranking needs 2."
    )
  epoch = zoo._epoch(config.epoch)
  read = [guard.read_models(zoo, ids, [epoch])]
  guard.claim(
    workdir,
    {
      "command": "select",
      "config": json.loads(config.to_json()),
      "zoo": os.path.abspath(zoo.workdir),
      **record,
    },
    read=read,
    follow_newest=config.epoch < 0,
    outputs=OUTPUTS,
    record_file=guard.RUN_FILE,
    holds=holds,
  )
  return ids, epoch, read


def _select_and_evaluate(
  config: ml_collections.ConfigDict, zoo: zoo_lib.Zoo, target: str, workdir: str
) -> dict:
  zoo_dir = zoo.workdir
  validate_config(config, target, data.DATASETS[zoo.config["dataset"]["name"]].num_classes)
  ids, epoch, read = _claim(
    config, zoo, workdir, {"target": target}, "another selection (another config, zoo or target)"
  )
  print(f"read {guard.describe(read)}")
  ranking, seconds = ranking_lib.task_scores(
    zoo, ids, config.epoch, target, config.probe_size, config.seed
  )
  at = zoo.metrics[zoo.metrics["epoch"] == epoch].set_index("model_id").loc[ids]
  ranking["source_acc"] = at["validation_acc"].to_numpy()
  seconds["source_acc"] = 0.0
  methods = [m for m in config.methods if m not in TRAINED_METHODS]
  if "short_finetune" in config.methods:
    ranking["short_finetune"], seconds["short_finetune"] = ranking_lib.short_finetune(
      config, zoo, ids, target, os.path.join(workdir, SHORT_DIR)
    )
  train_seconds = {}
  if any(m in config.methods for m in TRAINED_METHODS):
    tasks, task_seconds = ranking_lib.training_tasks(config, zoo, ids, workdir)
  if "learned" in config.methods:
    ranking["learned"], seconds["learned"] = ranking_lib.learned_scores(
      config, zoo, ids, ranking, seconds["all"], tasks
    )
    train_seconds["learned"] = task_seconds
    methods.append("learned")
  if "spider" in config.methods:
    ranking["spider"], seconds["spider"], fit_seconds = ranking_lib.spider_scores(
      config, zoo, ids, target, tasks
    )
    train_seconds["spider"] = task_seconds + fit_seconds
    methods.append("spider")
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
    if method in TRAINED_METHODS:
      entry.update(
        train_tasks=list(config.learned.train_tasks),
        amortized_train_seconds=train_seconds[method],
      )
    summary["methods"][method] = entry
  if config.finetune.noise_ceiling:
    summary["noise_ceiling"] = ranking_lib.noise_ceiling(
      config,
      zoo,
      scored["model_id"].to_numpy(),
      target,
      os.path.join(workdir, REPEAT_DIR),
      scored["finetuned_acc"].to_numpy(),
    )
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
  _TARGET = flags.DEFINE_string(
    "target", None, "Target dataset, a key of zoo_jax.data.DATASETS (none with configs/zood.py)."
  )
  _WORKDIR = flags.DEFINE_string("workdir", None, "Where ranking.csv, summary.json, ... go.")
  flags.mark_flags_as_required(["config", "zoo", "workdir"])

  def main(argv):
    del argv
    summary = select_and_evaluate(_CONFIG.value, _ZOO.value, _TARGET.value, _WORKDIR.value)
    print(json.dumps(summary, indent=1))

  cli.run(main)
