"""Evaluation of a zoo's three splits per (eval_models_per_vmap, eval_batch_size), side by side.

The train command evaluates every model on train, validation and test after every epoch, in
one jitted call per cohort; on CPU each core (one single-threaded XLA device) evaluates its
share of the models. This times that call on one such device for --p models (the share of
one core: 128 models over 2 cores is 64), for each chunking, and checks that the metrics do not
depend on it. Rates are model-images/s (forward passes).

  python benchmarks/eval_chunks.py                                  # mnist5k, 64 models, a few chunkings
  python benchmarks/eval_chunks.py --p=64 --settings=1x50,8x10,16x5,32x2
  python benchmarks/eval_chunks.py --config=configs/cifar10_large.py --p=8 --settings=1x50,4x10

Run it on an idle core (taskset -c 0 ...) for the numbers a core of the train command sees.
"""

import argparse
import importlib.util
import os
import sys
import time

# One single-threaded CPU device, as each core of the train command (train.cpu_xla_flags).
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _setting(text: str) -> tuple[int, int]:
  models, batch = text.lower().split("x")
  return int(models), int(batch)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--config", default="configs/mnist5k.py", help="train config (run from the repo root)"
  )
  parser.add_argument("--p", type=int, default=64, help="models evaluated (one core's share)")
  parser.add_argument(
    "--settings",
    default="1x50,1x10,8x10,16x5,32x2",
    help="comma-separated MODELSxBATCH: eval_models_per_vmap x eval_batch_size",
  )
  parser.add_argument(
    "--repeats", type=int, default=2, help="timed calls after the compiling one (best kept)"
  )
  args = parser.parse_args(argv)
  settings = [_setting(s) for s in args.settings.split(",") if s]

  import jax
  from zoo_jax import data, models, train
  from zoo_jax.engine import grid, population

  spec = importlib.util.spec_from_file_location("bench_config", os.path.join(ROOT, args.config))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.population.num_seeds = args.p
  (cohort, rows), *rest = grid.cohorts(grid.models_table(config.population, config.model.arch))
  if rest:
    print(f"(the config has {len(rest) + 1} cohorts; timing the first, {len(rows)} models)")
  splits = {
    s: data.load_as_zoo(config.dataset, s, models.image_size(config.model.arch))
    for s in data.SPLITS
  }
  train_set = splits["train"]
  arrays = train._cohort_arrays(rows, np.arange(len(rows)))
  state = population.create_population(
    cohort,
    arrays["seed"],
    arrays["init"],
    arrays["learning_rate"],
    arrays["weight_decay"],
    arrays["dropout"],
    train_set.image_shape,
    train_set.num_classes,
  )
  images = {s: jax.numpy.asarray(d.images) for s, d in splits.items()}
  labels = {s: jax.numpy.asarray(d.labels) for s, d in splits.items()}
  model_images = len(rows) * sum(len(d) for d in splits.values())
  print(
    f"== {args.config}: {len(rows)} models x {sum(len(d) for d in splits.values())} images "
    f"(train, validation, test), conv_impl {config.conv_impl}, load {os.getloadavg()[0]:.1f}",
    flush=True,
  )
  print(
    f"{'models':>6} {'batch':>5} {'compile+1st s':>13} {'eval s':>7} {'model-img/s':>12} {'vs first':>8} "
    f"{'max |Δ acc|':>11}"
  )
  first, reference = None, None
  for chunk, batch in settings:
    evaluate = population.make_evaluate(
      cohort,
      batch_size=batch,
      mean=train_set.mean,
      std=train_set.std,
      num_classes=train_set.num_classes,
      models_per_vmap=chunk,
      conv_impl=config.conv_impl,
    )
    start = time.perf_counter()
    out = jax.block_until_ready(evaluate(state.params, images, labels, state.model_state))
    compile_s = time.perf_counter() - start
    best = float("inf")
    for _ in range(args.repeats):
      start = time.perf_counter()
      out = jax.block_until_ready(evaluate(state.params, images, labels, state.model_state))
      best = min(best, time.perf_counter() - start)
    acc = np.concatenate([np.asarray(out[s].accuracy) for s in data.SPLITS])
    reference = acc if reference is None else reference
    first = best if first is None else first
    print(
      f"{chunk:>6} {batch:>5} {compile_s:>13.2f} {best:>7.2f} {model_images / best:>12.0f} "
      f"{first / best:>7.2f}x {np.abs(acc - reference).max():>11.2g}",
      flush=True,
    )


if __name__ == "__main__":
  main()
