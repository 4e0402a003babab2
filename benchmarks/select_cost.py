"""Cost of the cheap rankings against brute-force fine-tuning, side by side, compilation excluded.

  JAX_COMPILATION_CACHE_DIR=/tmp/xla_cache python benchmarks/select_cost.py --zoo=/tmp/zoo_select

One warm-up call of the feature scores (compiles the forward passes), then the timed call; then
brute force (every model fine-tuned, configs/select.py's recipe) into a fresh folder, its
programs taken from the persistent compilation cache when an earlier run filled it. Prints the
seconds of both and their ratio, and the machine.
"""

import argparse
import os
import platform
import tempfile
import time


from configs import select as select_config
from zoo_jax import zoo as zoo_lib
from zoo_jax.reuse import ranking, scores


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--zoo", required=True)
  parser.add_argument("--target", default="fashion_mnist")
  args = parser.parse_args()
  config = select_config.get_config()
  zoo = zoo_lib.Zoo(args.zoo)
  ids = zoo.select(status="ok")
  ranking.task_scores(zoo, ids, -1, args.target, config.probe_size, config.seed)  # warm-up
  _, seconds = ranking.task_scores(zoo, ids, -1, args.target, config.probe_size, config.seed)
  with tempfile.TemporaryDirectory() as workdir:
    start = time.time()
    ranking.brute_force(config, zoo, ids, args.target, os.path.join(workdir, "bf"))
    brute = time.time() - start
  print(
    f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; {len(ids)} models, "
    f"probe {config.probe_size} images, brute force {config.finetune.num_epochs} epochs on "
    f"{config.finetune.train_size} images"
  )
  for name in (*scores.names(), "zero_shot", "all"):
    print(
      f"{name:10s} {seconds[name]:8.2f} s   brute force {brute:8.2f} s   ratio {brute / seconds[name]:6.1f}x"
    )


if __name__ == "__main__":
  main()
