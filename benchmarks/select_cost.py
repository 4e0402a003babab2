"""Cost of the cheap rankings and of the short fine-tune against brute-force fine-tuning, side by side.

  JAX_COMPILATION_CACHE_DIR=/tmp/xla_cache python benchmarks/select_cost.py --zoo=/tmp/zoo_select
  python benchmarks/select_cost.py --zoo=/work/zoos/seed5k --num_models=64 --target=mnist5k_rot90

One warm-up call of the feature scores (compiles the forward passes), then the timed call; then
brute force (every model fine-tuned, configs/select.py's recipe) and the short fine-tune (the
`short_finetune` method: the recipe cut to `config.short_finetune`), each into a fresh folder,
`--repeats` times in turn, their programs taken from the persistent compilation cache when an
earlier run filled it. Prints the seconds of each and their ratio to brute force, and the machine.
`--num_models` takes a seeded subset of the zoo (the held-out-task study's).
"""

import argparse
import os
import platform
import tempfile
import time

import numpy as np

from configs import select as select_config
from zoo_jax import zoo as zoo_lib
from zoo_jax.reuse import ranking, scores


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--zoo", required=True)
  parser.add_argument("--target", default="fashion_mnist")
  parser.add_argument("--num_models", type=int, default=None)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  config = select_config.get_config()
  zoo = zoo_lib.Zoo(args.zoo)
  ids = zoo.select(status="ok")
  if args.num_models:
    ids = np.sort(np.random.default_rng(0).choice(ids, args.num_models, replace=False))
  ranking.task_scores(zoo, ids, -1, args.target, config.probe_size, config.seed)  # warm-up
  _, seconds = ranking.task_scores(zoo, ids, -1, args.target, config.probe_size, config.seed)
  brute, short = [], []
  with tempfile.TemporaryDirectory() as workdir:
    for i in range(args.repeats):
      start = time.time()
      ranking.brute_force(config, zoo, ids, args.target, os.path.join(workdir, f"bf{i}"))
      brute.append(time.time() - start)
      short.append(
        ranking.short_finetune(config, zoo, ids, args.target, os.path.join(workdir, f"short{i}"))[1]
      )
  brute = float(np.median(brute))
  print(
    f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; {len(ids)} models, "
    f"probe {config.probe_size} images, brute force {config.finetune.num_epochs} epochs on "
    f"{config.finetune.train_size} images"
  )
  for name in (*scores.names(), "zero_shot", "all"):
    print(
      f"{name:10s} {seconds[name]:8.2f} s   brute force {brute:8.2f} s   ratio {brute / seconds[name]:6.1f}x"
    )
  short = float(np.median(short))
  print(
    f"short_finetune {short:8.2f} s   brute force {brute:8.2f} s   ratio {brute / short:6.1f}x"
    f"   (medians of {args.repeats})"
  )


if __name__ == "__main__":
  main()
