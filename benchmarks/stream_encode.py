"""Peak memory of training a hyper-representation on a zoo 10x larger than a memory budget.

    python benchmarks/stream_encode.py --budget-mb=32 --zoo=/tmp/zoo_stream_synthetic

Writes (once) a synthetic zoo through zoo.ZooWriter: random N(0, 0.1) CNN-s weights, not
trained ones (only the bytes matter here), sized so that its states as float32 are at least
10x the budget. Then, each in a fresh process, what `zoo_jax.encode` does with a hyperrep config:
load the states (hygiene filter), the layer normaliser, one epoch of encoders.training.fit of a
small hyper-representation autoencoder over every state and an embedding of every state, with
the states loaded whole (encode.load_states) or streamed from disk (stream=True, a shuffle
buffer of --buffer-mb, default budget / 4).

Memory, from the kernel's VmRSS / VmHWM (the peak is reset with /proc/self/clear_refs):
baseline = RSS after imports and JIT (a first pass of the pipeline on 256 states); working set =
peak of a second such pass above the baseline (the jitted step's temporaries, allocated and freed
on every call, whatever the zoo size); data = peak of the full run above the working set's peak.
The budget is for the data; absolute peaks are printed too.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARAMS_PER_MODEL = 2464  # CNN-s on 1 channel


def _status_mb(field: str) -> float:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def _reset_peak() -> None:
  """Resets the kernel's peak RSS (VmHWM) of this process, so the peak is the data run's."""
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")


def make_zoo(workdir: str, num_models: int, num_epochs: int) -> None:
  """A synthetic zoo (random weights, random metrics) written by the project's zoo writer."""
  import jax
  import pandas as pd
  from zoo_jax import zoo
  from zoo_jax.convert.writer import param_shapes

  if os.path.exists(os.path.join(workdir, zoo.METRICS_FILE)):
    return
  os.makedirs(workdir, exist_ok=True)
  table = pd.DataFrame(
    {
      "model_id": np.arange(num_models),
      "cohort": 0,
      "cohort_index": np.arange(num_models),
      "seed": np.arange(num_models),
      "arch": "cnn_s",
      "activation": "tanh",
      "dropout": 0.0,
      "init": "synthetic",
      "optimizer": "adam",
      "learning_rate": 1e-3,
      "weight_decay": 0.0,
    }
  )
  zoo.write_json_atomic(
    {"synthetic": "random N(0, 0.1) CNN-s weights, benchmarks/stream_encode.py"},
    os.path.join(workdir, zoo.CONFIG_FILE),
  )
  zoo.write_table_atomic(table, os.path.join(workdir, zoo.MODELS_FILE))
  shapes = param_shapes("cnn_s", 1)
  writer, rows, rng = zoo.ZooWriter(workdir, training_state=False), [], np.random.default_rng(0)
  for epoch in range(num_epochs):
    params = jax.tree.map(
      lambda s: rng.normal(0, 0.1, (num_models,) + s.shape).astype(np.float32), shapes
    )
    metrics = {
      name: rng.uniform(0, 1, num_models).astype(np.float32) for name in zoo.METRIC_COLUMNS
    }
    metrics["diverged"] = np.zeros(num_models, bool)
    writer.save_weights(epoch, {0: params}, {0: metrics})
    rows.append(zoo.metrics_rows(table, epoch, {0: metrics}, {0: metrics["diverged"]}))
  writer.close()
  zoo.write_table_atomic(pd.concat(rows), os.path.join(workdir, zoo.METRICS_FILE))


def run(
  zoo_dir: str, mode: str, batch_size: int, buffer_mb: float, malloc: str = "command"
) -> dict:
  """One epoch of hyper-representation training plus an embedding of every state; memory numbers."""
  import jax
  import jax.numpy as jnp
  from zoo_jax import encode
  from zoo_jax.encoders import streaming
  from zoo_jax.encoders.methods import hyperrep
  from zoo_jax.encoders import training

  if mode == "streamed" and malloc == "command":
    assert streaming.bound_malloc()  # what `zoo_jax.encode` does with config.stream=True
  # Warm-up: the whole pipeline on epoch 0's first states (imports, compilation, allocator pools).
  probe = encode.load_states(zoo_dir, epochs=[0], stream=True, buffer_mb=buffer_mb)
  probe, spec = probe.rows(np.arange(len(probe.flat)) < 4 * batch_size), probe.spec
  model = hyperrep.make_model(spec, d_model=32, num_heads=2, num_blocks=1, latent_dim=16)
  tx = hyperrep.make_optimizer(1e-3)
  # The layer normaliser of the whole zoo (streamed: bounded memory), so the step compiles before
  # the baseline; the measured run computes it again, as encode does.
  variance = streaming.layer_variances(
    encode.load_states(zoo_dir, stream=True, buffer_mb=buffer_mb).flat, spec
  )
  step = hyperrep.make_train_step(
    model, tx, spec=spec, layer_variance=jnp.asarray(variance), permute=False
  )
  embed = hyperrep.make_embed(model, spec, batch_size=batch_size)
  params = hyperrep.init(jax.random.key(0), model)
  opt_state = tx.init(params)
  warm_up = lambda: (
    training.fit(
      step,
      params,
      opt_state,
      probe.flat,
      key=jax.random.key(1),
      num_epochs=1,
      batch_size=batch_size,
      progress=False,
    ),
    jax.block_until_ready(embed(params, probe.flat)),
  )
  warm_up()  # compiles
  baseline = _status_mb("VmRSS")  # after imports and JIT
  _reset_peak()
  warm_up()  # the compute's own working set (the step's temporaries, freed after each call), on 256 states
  working_set = _status_mb("VmHWM")
  del probe
  _reset_peak()
  started = time.perf_counter()
  phases = {}  # peak RSS above the baseline at the end of each phase
  mark = lambda name: phases.__setitem__(name, round(_status_mb("VmHWM") - working_set))
  states = encode.load_states(zoo_dir, stream=mode == "streamed", buffer_mb=buffer_mb)
  mark("load_states")
  np.testing.assert_allclose(streaming.layer_variances(states.flat, spec), variance, rtol=1e-6)
  params, _, history = training.fit(
    step,
    params,
    opt_state,
    states.flat,
    key=jax.random.key(2),
    num_epochs=1,
    batch_size=batch_size,
    progress=False,
  )
  mark("variances+fit")
  z = embed(params, states.flat)
  mark("embed")
  seconds = time.perf_counter() - started
  peak = _status_mb("VmHWM")
  return {
    "mode": mode,
    "states": len(states.flat),
    "zoo_mb": len(states.flat) * states.spec.size * 4 / 2**20,
    "baseline_rss_mb": baseline,
    "working_set_mb": working_set - baseline,
    "peak_rss_mb": peak,
    "data_peak_mb": peak - working_set,
    "seconds": seconds,
    "loss": history[-1]["loss"],
    "embedding": list(np.shape(z)),
    "embedding_sum": float(np.sum(np.asarray(z), dtype=np.float64)),
    "phases": phases,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--budget-mb", type=float, default=32.0)
  parser.add_argument("--zoo", default="/tmp/zoo_stream_synthetic")
  parser.add_argument("--models", type=int, default=1000)
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--modes", default="in_memory,streamed")
  parser.add_argument(
    "--buffer-mb", type=float, help="shuffle buffer of the streamed mode (default: budget / 4)"
  )
  parser.add_argument(
    "--malloc",
    choices=("command", "default"),
    default="command",
    help="command: the streamed run sets glibc malloc as `zoo_jax.encode` does with "
    "config.stream (streaming.bound_malloc); default: glibc's defaults",
  )
  parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one mode in this process
  args = parser.parse_args()
  buffer_mb = args.buffer_mb or args.budget_mb / 4
  if args.run:
    print(json.dumps(run(args.zoo, args.run, args.batch_size, buffer_mb, args.malloc)))
    return
  epochs = int(np.ceil(10 * args.budget_mb * 2**20 / (args.models * PARAMS_PER_MODEL * 4)))
  started = time.perf_counter()
  make_zoo(args.zoo, args.models, epochs)
  print(
    f"zoo {args.zoo}: {args.models} models x {epochs} epochs ({time.perf_counter() - started:.0f} s to write "
    f"or find); machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
  )
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  results = []
  for mode in args.modes.split(","):
    out = subprocess.run(
      [
        sys.executable,
        __file__,
        f"--zoo={args.zoo}",
        f"--run={mode}",
        f"--batch-size={args.batch_size}",
        f"--buffer-mb={buffer_mb}",
        f"--malloc={args.malloc}",
      ],
      env=env,
      capture_output=True,
      text=True,
    )
    if out.returncode:
      sys.exit(out.stderr[-3000:])
    results.append(json.loads(out.stdout.strip().splitlines()[-1]))
  print(
    f"malloc of the streamed run: {args.malloc} ({'streaming.bound_malloc, as zoo_jax.encode with config.stream' if args.malloc == 'command' else 'glibc defaults'}; "
    f"the in-memory run keeps glibc's defaults, as zoo_jax.encode does)"
  )
  print(
    f"budget for the data: {args.budget_mb:.0f} MB; zoo states as float32: {results[0]['zoo_mb']:.0f} MB "
    f"({results[0]['zoo_mb'] / args.budget_mb:.1f}x the budget), {results[0]['states']} states"
  )
  print(
    "baseline: RSS after imports and JIT; working set: peak RSS of the same pipeline on 256 states, above\n"
    "the baseline (the step's temporaries); data: peak RSS of the full run above that peak (the budget's part)"
  )
  print(
    f"{'mode':<10} {'baseline':>9} {'working set':>12} {'peak RSS':>9} {'data':>8} {'within budget':>14} "
    f"{'seconds':>8} {'loss':>7}  data by phase (cumulative peak)"
  )
  for r in results:
    print(
      f"{r['mode']:<10} {r['baseline_rss_mb']:>6.0f} MB {r['working_set_mb']:>+9.0f} MB {r['peak_rss_mb']:>6.0f} MB "
      f"{r['data_peak_mb']:>+5.0f} MB {str(r['data_peak_mb'] <= args.budget_mb):>14} {r['seconds']:>8.0f} "
      f"{r['loss']:>7.4f}  {r['phases']}"
    )
  print(
    "The losses differ when the shuffle buffer is smaller than the zoo: blocks of states are shuffled\n"
    "through the buffer instead of the whole zoo (with a buffer >= the zoo both draw the same batches)."
  )


if __name__ == "__main__":
  main()
