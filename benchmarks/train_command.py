"""The whole train command vs PyTorch one model per process per core, side by side in one run.

Runs `python -m zoo_jax.train` as a user does (a subprocess: startup, data, compilation,
training, the evaluation of every split after every epoch, checkpoints and tables), and
times its wall clock. Then trains the same number of models x epochs x steps with PyTorch
the way the published zoos were trained: CNN-s and Adam (benchmarks/torch_cnn.py), one
model at a time per process, one thread per process, one process per core, all at once;
its wall clock runs from spawning the processes to the last one finishing (training only:
no evaluation, no checkpoints, which favours PyTorch). Prints model-steps/s of both and
the ratio, per batch size.

  python benchmarks/train_command.py                            # mnist5k, 128 models x 2 epochs, batch 10 and 32
  python benchmarks/train_command.py --p=16 --epochs=1 --batch=32 --torch-models=2   # smoke run
  python benchmarks/train_command.py -- --config.models_per_vmap=4   # extra flags for the train command
  python benchmarks/train_command.py --warm    # also a second run on the compilation cache the first one filled

Each batch size's first run compiles from an empty cache of its own, whatever the user's
cache holds (cli.compilation_cache_dir).

--torch-models=K times K models per PyTorch process instead of all of them and scales the
time to the full count (models are independent and trained one after another, so the
rate is the same; the printout says when it is scaled).
"""

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADAM_LR = 1e-3  # configs/mnist5k.py


def _ints(text: str) -> list[int]:
  return [int(v) for v in text.split(",") if v]


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--config", default="configs/mnist5k.py", help="train config (run from the repo root)"
  )
  parser.add_argument("--p", type=int, default=128, help="models (config.population.num_seeds)")
  parser.add_argument("--epochs", type=int, default=2, help="epochs (config.num_epochs)")
  parser.add_argument("--batch", type=_ints, default=[10, 32], help="batch sizes, comma-separated")
  parser.add_argument(
    "--torch-procs",
    type=int,
    default=len(os.sched_getaffinity(0)),
    help="PyTorch processes, one thread each; default: usable cores",
  )
  parser.add_argument(
    "--torch-models",
    type=int,
    default=0,
    help="models timed per PyTorch process (0: all; K: K of them, time scaled to all)",
  )
  parser.add_argument("--skip-torch", action="store_true")
  parser.add_argument(
    "--warm",
    action="store_true",
    help="also time a second run of the train command on the compilation cache the first filled",
  )
  parser.add_argument("extra", nargs="*", help="extra flags for the train command (after --)")
  args = parser.parse_args(argv)
  if min(args.p, args.epochs, args.torch_procs) < 1 or args.torch_models < 0:
    parser.error("--p, --epochs and --torch-procs must be >= 1, --torch-models >= 0")
  return args


def _train_set(config_path: str, extra: list[str]):
  """The training split the config trains on (for PyTorch and the step count)."""
  sys.path.insert(0, ROOT)
  import importlib.util
  from zoo_jax import data, train

  spec = importlib.util.spec_from_file_location("bench_config", os.path.join(ROOT, config_path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for flag in extra:  # an override of the training set's size changes the step count
    if flag.startswith("--config.dataset.train_size="):
      config.dataset.train_size = int(flag.split("=", 1)[1])
  ds = config.dataset
  split = data.load(ds.name, "train", source=ds.source, data_dir=ds.data_dir, seed=ds.split_seed)
  if ds.train_size is not None:
    split = train._subset(split, ds.train_size, ds.split_seed)
  return split


def _children_cpu_s() -> float:
  """User + system CPU seconds of this process's finished children so far."""
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def run_train_command(args, batch: int, cache_dir: str) -> dict:
  """One run of the train command into a new workdir, with `cache_dir` as its compilation cache
  (a fresh folder: a first run, which compiles; the same folder again: a run that reads the cache)."""
  with tempfile.TemporaryDirectory(prefix="bench_train_") as workdir:
    command = [
      sys.executable,
      "-m",
      "zoo_jax.train",
      f"--config={args.config}",
      f"--workdir={workdir}/zoo",
      f"--config.population.num_seeds={args.p}",
      f"--config.num_epochs={args.epochs}",
      f"--config.batch_size={batch}",
      "--config.progress_bar=False",
      *args.extra,
    ]
    env = dict(
      os.environ,
      PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
      ZOO_JAX_COMPILATION_CACHE=cache_dir,
    )
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    start, cpu = time.perf_counter(), _children_cpu_s()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - start, _children_cpu_s() - cpu
  if result.returncode != 0:
    raise SystemExit(f"train command failed ({result.returncode}):\n{result.stderr[-3000:]}")
  return dict(wall=wall, cpu=cpu, stdout=result.stdout)


def _torch_worker(rank, num_models, epochs, batch, images, labels, mean, std, queue):
  os.environ["OMP_NUM_THREADS"] = "1"
  import torch
  import torch_cnn

  torch.set_num_threads(1)
  x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # uint8 NCHW
  y = torch.from_numpy(labels.astype(np.int64))
  steps = len(labels) // batch
  for m in range(num_models):
    torch.manual_seed(1000 * rank + m)
    model = torch_cnn.cnn_s(images.shape[-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=ADAM_LR)
    train_epoch = torch_cnn.make_train_epoch(
      model, optimizer, x, y, batch_size=batch, steps=steps, mean=mean, std=std
    )
    generator = torch.Generator().manual_seed(1000 * rank + m)
    for _ in range(epochs):
      train_epoch(generator)
  queue.put(rank)


def run_torch(args, batch: int, split) -> dict:
  """Wall clock of `procs` processes training their share of the models, from spawn to the last exit."""
  per_proc = [len(range(r, args.p, args.torch_procs)) for r in range(args.torch_procs)]
  timed = [min(n, args.torch_models) if args.torch_models else n for n in per_proc]
  ctx = mp.get_context("spawn")
  queue = ctx.Queue()
  start, cpu = time.perf_counter(), _children_cpu_s()
  workers = [
    ctx.Process(
      target=_torch_worker,
      args=(
        r,
        timed[r],
        args.epochs,
        batch,
        split.images,
        split.labels,
        float(split.mean[0]),
        float(split.std[0]),
        queue,
      ),
    )
    for r in range(args.torch_procs)
  ]
  for w in workers:
    w.start()
  for _ in workers:
    queue.get(timeout=7200)
  wall = time.perf_counter() - start
  for w in workers:
    w.join()
  cpu = _children_cpu_s() - cpu  # the workers (and the spawn helper), once joined
  # Scaled to all models: the slowest process sets the wall clock.
  scale = max(per_proc) / max(timed)
  return dict(
    wall=wall * scale,
    measured_wall=wall,
    scaled=scale != 1,
    timed_models=sum(timed),
    cpu=cpu * sum(per_proc) / sum(timed),
  )


def main(argv=None):
  args = parse_args(argv)
  sys.path.insert(
    0, os.path.dirname(os.path.abspath(__file__))
  )  # torch_cnn, also in spawned workers
  split = _train_set(args.config, args.extra)
  load = os.getloadavg()
  print(
    f"== {args.config}: {args.p} models x {args.epochs} epochs, {len(split)} training images, "
    f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), load {load[0]:.1f} {load[1]:.1f}"
    + (
      "  WARNING: other processes share the CPU; ratios hold better than absolute rates"
      if load[0] > 0.5
      else ""
    ),
    flush=True,
  )
  xla_flags = os.environ.get("XLA_FLAGS")
  print(
    f"   train command extra flags: {args.extra or 'none'}; XLA_FLAGS="
    + (
      repr(xla_flags)
      if xla_flags is not None
      else "unset (the train command's defaults: train.cpu_xla_flags)"
    )
  )
  rows = []
  for batch in args.batch:
    model_steps = args.p * args.epochs * (len(split) // batch)
    with tempfile.TemporaryDirectory(prefix="bench_xla_cache_") as cache_dir:
      zoo = run_train_command(args, batch, cache_dir)
      warm = run_train_command(args, batch, cache_dir) if args.warm else None
    line = (
      f"-- batch {batch}: zoo_jax train command {zoo['wall']:.1f} s wall ({zoo['cpu']:.1f} CPU s), "
      f"{model_steps / zoo['wall']:.0f} model-steps/s ({model_steps} model-steps)"
    )
    if warm:
      line += (
        f"; again on the warm compilation cache {warm['wall']:.1f} s ({warm['cpu']:.1f} CPU s), "
        f"{model_steps / warm['wall']:.0f} model-steps/s"
      )
    torch_rate = None
    if not args.skip_torch:
      ref = run_torch(args, batch, split)
      torch_rate = model_steps / ref["wall"]
      line += (
        f"; PyTorch {args.torch_procs} procs {ref['wall']:.1f} s"
        + (
          f" (scaled from {ref['measured_wall']:.1f} s for {ref['timed_models']} models)"
          if ref["scaled"]
          else ""
        )
        + f" ({ref['cpu']:.1f} CPU s), {torch_rate:.0f} model-steps/s"
      )
    print(line, f"load {os.getloadavg()[0]:.1f}", flush=True)
    for label, run in (("cold", zoo), ("warm", warm)):
      if run:
        cpu_ratio = ref["cpu"] / run["cpu"] if not args.skip_torch else None
        rows.append((batch, label, model_steps / run["wall"], torch_rate, cpu_ratio))
  print()
  print(
    f"{'batch':>5} {'cache':>5} {'zoo_jax':>10} {'torch':>10} {'ratio':>7} {'CPU-time ratio':>15}   "
    "(model-steps/s, wall clock; then torch CPU s / zoo_jax CPU s for the same work)"
  )
  for batch, label, rate, torch_rate, cpu_ratio in rows:
    ratio = f"{rate / torch_rate:.2f}x" if torch_rate else "-"
    cpu_ratio = f"{cpu_ratio:.2f}x" if cpu_ratio else "-"
    print(
      f"{batch:>5} {label:>5} {rate:>10.0f} {torch_rate or float('nan'):>10.0f} {ratio:>7} {cpu_ratio:>15}"
    )
  print(
    "(cold: a first run, with an empty compilation cache; warm: the same command again, as a second zoo, "
    "a resumed run or a fine-tune of the same shapes runs: cli.compilation_cache_dir)"
  )
  print(
    "(On a busy machine wall clocks measure the share of the CPU each side got; the CPU-time ratio is "
    "the efficiency, which the wall-clock ratio approaches on an idle machine where both sides keep every core busy.)"
  )


if __name__ == "__main__":
  main()
