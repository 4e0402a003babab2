#!/usr/bin/env bash
# The accelerator path: the 1,000-model MNIST seed zoo (configs/mnist.py: CNN-s, tanh, U(0,1)
# init, Adam 3e-4, batch 10) trained with models_per_vmap=0 (the whole cohort in one vmap),
# for a fixed number of steps, with each conv implementation. Prints model-steps/s, compile
# time, memory, and the projected time of the full zoo (50 epochs of 5,000 steps, plus the
# evaluation of train, validation and test after every epoch). Sized to end within 8 minutes
# on one GPU; the whole run is cut at TIME_LIMIT seconds.
#
#   bash benchmarks/accelerator.sh                          # on a GPU machine, from the repo root
#   P=8 STEPS=5 EVAL_IMAGES=200 bash benchmarks/accelerator.sh   # a CPU smoke run of the logic
#
# Data: random MNIST-shaped images (28x28x1 uint8, 10 classes; the speed does not depend on the
# pixels), or the real MNIST training set with MNIST_DIR=<folder of MNIST IDX files>.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export P="${P:-1000}" STEPS="${STEPS:-200}" BATCH="${BATCH:-10}" IMPLS="${IMPLS:-xla patches taps}"
export EVAL_IMAGES="${EVAL_IMAGES:-2000}" EVAL_BATCH="${EVAL_BATCH:-100}" EPOCHS="${EPOCHS:-50}"
TIME_LIMIT="${TIME_LIMIT:-470}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout "$TIME_LIMIT" "${PYTHON:-python}" - <<'EOF'
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import mnist
from zoo_jax import data
from zoo_jax.engine import population

P, STEPS, BATCH = int(os.environ["P"]), int(os.environ["STEPS"]), int(os.environ["BATCH"])
EVAL_IMAGES, EVAL_BATCH, EPOCHS = int(os.environ["EVAL_IMAGES"]), int(os.environ["EVAL_BATCH"]), int(os.environ["EPOCHS"])
config = mnist.get_config()
info = data.DATASETS["mnist"]
TRAIN_IMAGES, EVAL_PER_EPOCH = 60_000 - info.validation_size, 70_000  # train, validation and test evaluated
steps_per_epoch = TRAIN_IMAGES // BATCH
print(f"jax {jax.__version__}, devices {jax.devices()}; P={P} batch={BATCH} steps={STEPS} models_per_vmap=0",
      flush=True)

n = max(STEPS * BATCH, EVAL_IMAGES)
if os.environ.get("MNIST_DIR"):  # a folder of MNIST IDX files
  train = data.load("mnist", "train", source="local", data_dir=os.environ["MNIST_DIR"], seed=0)
  images, labels, source = train.images[:n], train.labels[:n], f"real MNIST from {os.environ['MNIST_DIR']}"
else:  # the timing does not depend on the pixels
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, n).astype(np.int32)
  source = "random MNIST-shaped images (MNIST_DIR=<folder of IDX files> for the real ones)"
print(f"data: {source}", flush=True)
x, y = jnp.asarray(images[: STEPS * BATCH]), jnp.asarray(labels[: STEPS * BATCH])
ex, ey = jnp.asarray(images[:EVAL_IMAGES]), jnp.asarray(labels[:EVAL_IMAGES])
grid = config.population.grid
cohort = population.Cohort("cnn_s", grid.activation[0], grid.optimizer[0], use_dropout=False)
mean, std = info.mean, info.std


def peak_bytes():
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def measure(impl):
  state = population.create_population(
      cohort, np.arange(1, P + 1), np.array([grid.init[0]] * P), np.full(P, grid.learning_rate[0]),
      np.zeros(P), np.zeros(P), (28, 28, 1))
  train_epoch = population.make_train_epoch(cohort, batch_size=BATCH, num_train=STEPS * BATCH, mean=mean, std=std,
                                            models_per_vmap=0, conv_impl=impl)
  start = time.perf_counter()
  compiled = train_epoch.lower(state, x, y).compile()
  compile_s = time.perf_counter() - start
  analysis = compiled.memory_analysis()
  temp_gib = getattr(analysis, "temp_size_in_bytes", 0) / 2**30 if analysis else float("nan")
  state, _ = jax.block_until_ready(compiled(state, x, y))  # warm-up
  times = []
  for _ in range(2):
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(state, x, y))
    times.append(time.perf_counter() - start)
  rate = P * STEPS / statistics.median(times)

  evaluate = population.make_evaluate(cohort, batch_size=EVAL_BATCH, mean=mean, std=std, models_per_vmap=0,
                                      conv_impl=impl)
  start = time.perf_counter()
  eval_compiled = evaluate.lower(state.params, ex, ey).compile()
  eval_compile_s = time.perf_counter() - start
  jax.block_until_ready(eval_compiled(state.params, ex, ey))
  start = time.perf_counter()
  jax.block_until_ready(eval_compiled(state.params, ex, ey))
  eval_per_image = (time.perf_counter() - start) / EVAL_IMAGES
  peak = peak_bytes()
  epoch_s = P * steps_per_epoch / rate + eval_per_image * EVAL_PER_EPOCH
  print(f"-- conv_impl={impl}: {rate:,.0f} model-steps/s (epochs of {STEPS} steps: "
        f"{', '.join(f'{t:.2f}' for t in times)} s), compile {compile_s:.1f} s (+ evaluation {eval_compile_s:.1f} s), "
        f"XLA temp {temp_gib:.2f} GiB, device peak {peak / 2**30 if peak else float('nan'):.2f} GiB, "
        f"evaluation {P / eval_per_image:,.0f} model-images/s, "
        f"diverged {int(np.asarray(state.diverged).sum())}/{P}", flush=True)
  return impl, rate, compile_s, epoch_s


rows = []
for impl in os.environ["IMPLS"].split():
  try:  # one form failing (memory, an unsupported op) still leaves the others' figures
    rows.append(measure(impl))
  except Exception as error:
    print(f"-- conv_impl={impl}: failed: {type(error).__name__}: {str(error).splitlines()[0][:300]}", flush=True)

print(f"\nprojection for the full zoo: {P} models x {EPOCHS} epochs x {steps_per_epoch} steps "
      f"+ evaluation of {EVAL_PER_EPOCH:,} images per model per epoch")
for impl, rate, compile_s, epoch_s in rows:
  print(f"  {impl:8s} {rate:>12,.0f} model-steps/s  epoch {epoch_s:8.1f} s  {EPOCHS} epochs "
        f"{EPOCHS * epoch_s / 3600:7.2f} h (compile {compile_s:.0f} s once)")
EOF
