"""Rankers trained on other tasks, judged on held-out tasks: Model Spider and the learned GBT ranker
against LogME and NCC, leave one task out over a pool of tasks, with the brute-force noise ceiling
and a short fine-tune (one epoch on 500 images, OUT/short/) as the proxy that trains.

  PYTHONPATH=. python studies/rankers_heldout.py --zoo=/work/zoos/hyp5k --out=/tmp/rankers_hyp5k

Every task of TASKS is brute-force fine-tuned once (configs/select.py's recipe) into OUT/tasks/, and
once more with other seeds into OUT/repeat/ (the noise ceiling). Then for each task in turn, the
rankers are trained on all the others and rank the zoo for it; per (seed, held-out task): Kendall
and weighted tau of every method against that task's fine-tuned accuracy. OUT/rankers.csv holds
them, and the script prints the mean and spread over tasks and seeds.
"""

import argparse
import os

import numpy as np
import pandas as pd

from configs import select as select_config
from zoo_jax import zoo as zoo_lib
from zoo_jax.reuse import ranking

TASKS = (
  "mnist5k_rot90",
  "mnist5k_invert",
  "mnist5k_noise",
  "mnist5k_rot45",
  "fashion_mnist",
  "fashion_mnist_rot90",
  "fashion_mnist_invert",
  "fashion_mnist_noise",
)
FEATURE_METHODS = ("logme", "ncc", "hscore", "zero_shot")


def main(zoo_dir: str, out: str, seeds: list[int], num_models: int | None) -> pd.DataFrame:
  zoo = zoo_lib.Zoo(zoo_dir)
  ids = zoo.select(status=zoo_lib.STATUS_OK, epoch=-1)
  if num_models:
    ids = np.sort(np.random.default_rng(0).choice(ids, num_models, replace=False))
  rows, short = [], {}
  for seed in seeds:
    config = select_config.get_config()
    config.seed = seed
    config.learned.train_tasks = TASKS
    config.learned.tasks_dir = os.path.join(out, "tasks")
    tasks, _ = ranking.training_tasks(config, zoo, ids, out)  # every task's scores and truth
    for i, (target, target_table, truth) in enumerate(tasks):
      others = tasks[:i] + tasks[i + 1 :]
      config.learned.train_tasks = tuple(t for t, _, _ in others)
      found = {m: target_table[m].to_numpy() for m in FEATURE_METHODS}
      found["learned"], _ = ranking.learned_scores(config, zoo, ids, target_table, 0.0, others)
      found["spider"], _, _ = ranking.spider_scores(config, zoo, ids, target, others)
      if target not in short:  # one short fine-tune per task (its seeds do not follow `seed`)
        short[target] = ranking.short_finetune(
          config, zoo, ids, target, os.path.join(out, "short", target)
        )
      found["short_finetune"] = short[target][0]
      if seed == seeds[0]:
        config.learned.train_tasks = TASKS
        ceiling = ranking.noise_ceiling(
          config, zoo, ids, target, os.path.join(out, "repeat", target), truth
        )
        rows.append({"seed": seed, "task": target, "method": "noise_ceiling", **ceiling})
      for method, scores in found.items():
        rows.append(
          {"seed": seed, "task": target, "method": method, **ranking.ranking_metrics(scores, truth)}
        )
      table = pd.DataFrame(rows)
      zoo_lib.write_table_atomic(table, os.path.join(out, "rankers.csv"))
      print(table[table["task"] == target].to_string(index=False), flush=True)
  table = pd.DataFrame(rows)
  summary = table.groupby("method")[["kendall_tau", "weighted_tau"]].agg(["mean", "std"])
  print(summary.round(3).to_string())
  return table


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--zoo", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--num_models", type=int, default=None)
  args = parser.parse_args()
  main(args.zoo, args.out, [int(s) for s in args.seeds.split(",")], args.num_models)
