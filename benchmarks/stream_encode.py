"""Peak memory of training a hyper-representation on a zoo 10x larger than a memory budget.

    python benchmarks/stream_encode.py --budget-mb=32 --zoo=/tmp/zoo_stream_synthetic

Writes (once) a synthetic zoo through zoo.ZooWriter: random N(0, 0.1) CNN-s weights, not
trained ones (only the bytes matter here), sized so that its states as float32 are at least
10x the budget. Then, each in a fresh process, one epoch of encoders.training.fit of the
hyper-representation autoencoder over every state and an embedding of every state, with the
states either streamed from disk (encode.stream_states) or loaded whole (encode.load_states).
The budget is for the data: peak RSS minus the RSS after imports, JAX start-up and a warm-up
run of the same pipeline on epoch 0's states (compilation, allocator pools); both numbers are
printed, absolute and relative. The two modes draw the same batches, so their losses agree.
"""

import argparse
import json
import os
import platform
import resource
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
  table = pd.DataFrame({"model_id": np.arange(num_models), "cohort": 0, "cohort_index": np.arange(num_models),
                        "seed": np.arange(num_models), "arch": "cnn_s", "activation": "tanh", "dropout": 0.0,
                        "init": "synthetic", "optimizer": "adam", "learning_rate": 1e-3, "weight_decay": 0.0})
  zoo.write_json_atomic({"synthetic": "random N(0, 0.1) CNN-s weights, benchmarks/stream_encode.py"},
                        os.path.join(workdir, zoo.CONFIG_FILE))
  zoo.write_table_atomic(table, os.path.join(workdir, zoo.MODELS_FILE))
  shapes = param_shapes("cnn_s", 1)
  writer, rows, rng = zoo.ZooWriter(workdir, training_state=False), [], np.random.default_rng(0)
  for epoch in range(num_epochs):
    params = jax.tree.map(lambda s: rng.normal(0, 0.1, (num_models,) + s.shape).astype(np.float32), shapes)
    metrics = {name: rng.uniform(0, 1, num_models).astype(np.float32) for name in zoo.METRIC_COLUMNS}
    metrics["diverged"] = np.zeros(num_models, bool)
    writer.save_weights(epoch, {0: params}, {0: metrics})
    rows.append(zoo.metrics_rows(table, epoch, {0: metrics}, {0: metrics["diverged"]}))
  writer.close()
  zoo.write_table_atomic(pd.concat(rows), os.path.join(workdir, zoo.METRICS_FILE))


def run(zoo_dir: str, mode: str, batch_size: int, buffer_mb: float) -> dict:
  """One epoch of hyper-representation training plus an embedding of every state; memory numbers."""
  import jax
  import jax.numpy as jnp
  from zoo_jax import encode, streaming
  from zoo_jax.encoders import hyperrep, training
  # Warm-up: the whole pipeline on epoch 0's first states (imports, compilation, allocator pools).
  probe = encode.load_states(zoo_dir, epochs=[0], stream=True, buffer_mb=buffer_mb)
  probe, spec = probe.rows(np.arange(len(probe.flat)) < 4 * batch_size), probe.spec
  model = hyperrep.make_model(spec, d_model=32, num_heads=2, num_blocks=1, latent_dim=16)
  tx = hyperrep.make_optimizer(1e-3)
  # The layer normaliser of the whole zoo (streamed: bounded memory), so the step compiles before
  # the baseline; the measured run computes it again, as encode does.
  variance = streaming.layer_variances(encode.load_states(zoo_dir, stream=True, buffer_mb=buffer_mb).flat, spec)
  step = hyperrep.make_train_step(model, tx, spec=spec, layer_variance=jnp.asarray(variance), permute=False)
  embed = hyperrep.make_embed(model, spec, batch_size=batch_size)
  params = hyperrep.init(jax.random.key(0), model)
  opt_state = tx.init(params)
  training.fit(step, params, opt_state, probe.flat, key=jax.random.key(1), num_epochs=1, batch_size=batch_size,
               progress=False)
  jax.block_until_ready(embed(params, probe.flat))
  del probe
  baseline = _status_mb("VmRSS")
  _reset_peak()
  started = time.perf_counter()
  states = encode.load_states(zoo_dir, stream=mode == "streamed", buffer_mb=buffer_mb)
  np.testing.assert_allclose(streaming.layer_variances(states.flat, spec), variance, rtol=1e-6)
  params, _, history = training.fit(step, params, opt_state, states.flat, key=jax.random.key(2), num_epochs=1,
                                    batch_size=batch_size, progress=False)
  z = embed(params, states.flat)
  seconds = time.perf_counter() - started
  peak = _status_mb("VmHWM")
  return {"mode": mode, "states": len(states.flat), "zoo_mb": len(states.flat) * states.spec.size * 4 / 2**20,
          "baseline_rss_mb": baseline, "peak_rss_mb": peak, "data_peak_mb": peak - baseline,
          "seconds": seconds, "loss": history[-1]["loss"], "embedding": list(np.shape(z)),
          "embedding_sum": float(np.sum(np.asarray(z), dtype=np.float64))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--budget-mb", type=float, default=32.0)
  parser.add_argument("--zoo", default="/tmp/zoo_stream_synthetic")
  parser.add_argument("--models", type=int, default=1000)
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--modes", default="in_memory,streamed")
  parser.add_argument("--buffer-mb", type=float, help="shuffle buffer of the streamed mode (default: budget / 4)")
  parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one mode in this process
  args = parser.parse_args()
  buffer_mb = args.buffer_mb or args.budget_mb / 4
  if args.run:
    print(json.dumps(run(args.zoo, args.run, args.batch_size, buffer_mb)))
    return
  epochs = int(np.ceil(10 * args.budget_mb * 2**20 / (args.models * PARAMS_PER_MODEL * 4)))
  started = time.perf_counter()
  make_zoo(args.zoo, args.models, epochs)
  print(f"zoo {args.zoo}: {args.models} models x {epochs} epochs ({time.perf_counter() - started:.0f} s to write "
        f"or find); machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  results = []
  for mode in args.modes.split(","):
    out = subprocess.run([sys.executable, __file__, f"--zoo={args.zoo}", f"--run={mode}",
                          f"--batch-size={args.batch_size}", f"--buffer-mb={buffer_mb}"], env=env, capture_output=True, text=True)
    if out.returncode:
      sys.exit(out.stderr[-3000:])
    results.append(json.loads(out.stdout.strip().splitlines()[-1]))
  print(f"budget for the data: {args.budget_mb:.0f} MB; zoo states as float32: {results[0]['zoo_mb']:.0f} MB "
        f"({results[0]['zoo_mb'] / args.budget_mb:.1f}x the budget), {results[0]['states']} states")
  print(f"{'mode':<10} {'baseline RSS':>13} {'peak RSS':>9} {'peak - baseline':>16} {'within budget':>14} "
        f"{'seconds':>8} {'loss':>7}")
  for r in results:
    print(f"{r['mode']:<10} {r['baseline_rss_mb']:>10.0f} MB {r['peak_rss_mb']:>6.0f} MB {r['data_peak_mb']:>13.0f} MB "
          f"{str(r['data_peak_mb'] <= args.budget_mb):>14} {r['seconds']:>8.0f} {r['loss']:>7.4f}")


if __name__ == "__main__":
  main()
