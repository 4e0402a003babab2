"""Population throughput: zoo_jax's vmapped engine vs a sequential JAX loop vs PyTorch.

Measures model-steps per second (one model, one optimizer step at the given batch size)
of CNN-s (tanh, Adam lr 3e-4) on real MNIST digits (mnist5k), three ways:
  (a) zoo_jax: one jitted `train_epoch` call per epoch (lax.scan over steps, vmap over P models);
  (b) a sequential JAX loop: the P=1 `train_epoch` called once per model, for a few models;
  (c) PyTorch: one model per process, one thread each, one process per core, all busy at
      once (the way the published zoos were trained); total = sum over processes.
An epoch is a fixed number of steps (--steps): the training set is sliced to steps*batch
images. Compile time is trace+lower+XLA compile (`lower().compile()`); throughput is the
median of --repeats timed epochs after one warm-up epoch.

  python benchmarks/population_throughput.py                 # P=1,16,128,512; batch 10,32 (~30 min)
  python benchmarks/population_throughput.py --quick         # smoke run, ~1 minute
  python benchmarks/population_throughput.py --p=1,16 --batch=32 --skip-torch
  python benchmarks/population_throughput.py --p=128 --batch=10,32 --steps=20 --models-per-vmap=1 \
      --conv-impl=xla,patches,taps                             # the conv implementations side by side
  python benchmarks/population_throughput.py --p=128 --batch=32 --skip-torch --devices=2  # 2 forced host devices

torch is optional (benchmark-only): pip install torch==2.13.0  (a local CPU build here).
"""

import argparse
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np

# CNN-s as (kind, out_channels or units, kernel, pool after); max-pool comes before the
# activation in the Model Zoos nets, which does not change the MAC count.
CNN_S_LAYERS = (
  ("conv", 8, 5, 2),
  ("conv", 6, 5, 2),
  ("conv", 4, 2, 1),
  ("dense", 20, None, None),
  ("dense", 10, None, None),
)
ADAM_LR = 3e-4


def cnn_s_costs(height: int, width: int, channels: int) -> tuple[list[tuple[str, int]], int]:
  """Forward multiply-accumulates per image of each CNN-s layer, and the parameter count."""
  h, w, c = height, width, channels
  costs, n_params, flat = [], 0, None
  for i, (kind, out, k, pool) in enumerate(CNN_S_LAYERS):
    if kind == "conv":  # VALID convolution, stride 1
      h, w = h - k + 1, w - k + 1
      costs.append((f"conv_{i} {k}x{k} {c}->{out} @{h}x{w}", h * w * out * k * k * c))
      n_params += k * k * c * out + out
      h, w, c = h // pool, w // pool, out
    else:
      fan_in = flat if flat is not None else h * w * c
      costs.append((f"dense {fan_in}->{out}", fan_in * out))
      n_params += fan_in * out + out
      flat = out
  return costs, n_params


def _check_layer_table(n_params: int) -> None:
  """The MAC table must describe the model that is trained: compare parameter counts."""
  import jax
  import jax.numpy as jnp
  from zoo_jax import models

  shapes = jax.eval_shape(
    models.get_model("cnn_s").init, jax.random.key(0), jnp.zeros((1, 28, 28, 1))
  )
  actual = sum(x.size for x in jax.tree.leaves(shapes))
  if actual != n_params:
    raise SystemExit(
      f"CNN_S_LAYERS has {n_params} parameters, zoo_jax's cnn_s {actual}: update the table."
    )


def machine_info() -> list[str]:
  import jax

  try:
    import torch

    torch_version = torch.__version__
  except ImportError:
    torch_version = "not installed (pip install torch==2.13.0)"
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
  return [
    f"platform: {platform.platform()}  python {platform.python_version()}",
    f"cpu: {cpu}; os.cpu_count()={os.cpu_count()}, usable={len(os.sched_getaffinity(0))}; "
    f"memory {mem_gb:.1f} GiB",
    f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}",
    f"torch {torch_version}",
  ]


def rss_gib() -> float:
  """Peak resident set size of this process so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _load_subset(batch: int, steps: int):
  from zoo_jax import data

  ds = data.load("mnist5k", "train")
  n = steps * batch
  if n > len(ds):
    raise SystemExit(
      f"--steps={steps} x batch={batch} = {n} images, more than mnist5k train ({len(ds)})."
    )
  return ds, ds.images[:n], ds.labels[:n]


def _population(
  p: int,
  batch: int,
  steps: int,
  seed0: int = 0,
  models_per_vmap: int = 0,
  conv_impl: str = "xla",
  devices: int = 1,
):
  """(train_epoch, state, images, labels) for P CNN-s models on the steps*batch subset.

  devices > 1: the model axis is sharded over that many (forced host) devices, as
  config.shard does; data is replicated.
  """
  import jax
  import jax.numpy as jnp
  from zoo_jax.engine import population as pop
  from zoo_jax.engine import sharding

  ds, images, labels = _load_subset(batch, steps)
  cohort = pop.Cohort("cnn_s", "tanh", "adam", use_dropout=False)
  state = pop.create_population(
    cohort,
    seeds=np.arange(seed0, seed0 + p),
    inits=np.array(["kaiming_uniform"] * p),
    learning_rate=np.full(p, ADAM_LR),
    weight_decay=np.zeros(p),
    dropout_rate=np.zeros(p),
    input_shape=ds.image_shape,
    num_classes=ds.num_classes,
  )
  train_epoch = pop.make_train_epoch(
    cohort,
    batch_size=batch,
    num_train=len(labels),
    mean=ds.mean,
    std=ds.std,
    num_classes=ds.num_classes,
    models_per_vmap=models_per_vmap,
    conv_impl=conv_impl,
  )
  images, labels = jnp.asarray(images), jnp.asarray(labels)
  if devices > 1:
    mesh = sharding.population_mesh(jax.devices()[:devices])
    state, (images, labels) = (
      sharding.shard_models(state, mesh),
      sharding.replicate((images, labels), mesh),
    )
    # Every model is independent, so each device runs the engine on its own slice of the
    # cohort (shard_map). Left to the SPMD partitioner, the lax.map over models
    # (models_per_vmap > 0) comes back replicated, with no parallelism.
    models_spec, whole = (
      jax.sharding.PartitionSpec(sharding.MODEL_AXIS),
      jax.sharding.PartitionSpec(),
    )
    train_epoch = jax.jit(
      jax.shard_map(
        train_epoch, mesh=mesh, in_specs=(models_spec, whole, whole), out_specs=models_spec
      )
    )
  return train_epoch, state, images, labels


def _block(tree):
  import jax

  return jax.block_until_ready(tree)


def bench_zoo(
  p: int,
  batch: int,
  steps: int,
  repeats: int,
  max_mem_frac: float,
  models_per_vmap: int = 0,
  conv_impl: str = "xla",
  devices: int = 1,
) -> dict:
  """zoo_jax engine at population P: compile time, compiled memory, median model-steps/s."""
  devices = devices if p % devices == 0 else 1  # e.g. P=1: nothing to split
  train_epoch, state, images, labels = _population(
    p, batch, steps, models_per_vmap=models_per_vmap, conv_impl=conv_impl, devices=devices
  )
  t0 = time.perf_counter()
  lowered = train_epoch.lower(state, images, labels)
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  mem = compiled.memory_analysis()
  need = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
  avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
  result = dict(
    p=p,
    batch=batch,
    mpv=models_per_vmap,
    conv=conv_impl,
    dev=devices,
    lower_s=t1 - t0,
    compile_s=t2 - t0,
    xla_gib=need / 2**30,
  )
  if need > max_mem_frac * avail:  # refuse before running rather than swap or be OOM-killed
    result["skipped"] = (
      f"needs {need / 2**30:.1f} GiB > {max_mem_frac:.0%} of {avail / 2**30:.1f} GiB free"
    )
    return result
  t3 = time.perf_counter()
  state, metrics = _block(compiled(state, images, labels))  # warm-up epoch
  result["first_s"] = time.perf_counter() - t3
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    state, metrics = _block(compiled(state, images, labels))
    times.append(time.perf_counter() - t)
  result.update(
    epoch_s=times,
    rate=p * steps / statistics.median(times),
    rss_gib=rss_gib(),
    load=os.getloadavg()[0],
    loss=float(np.nanmean(np.asarray(metrics.loss))),
    diverged=int(np.asarray(state.diverged).sum()),
  )
  return result


def bench_sequential(batch: int, steps: int, repeats: int, n_models: int) -> dict:
  """The P=1 engine called once per model, for n_models models; median per-model-step rate."""
  train_epoch, _, images, labels = _population(1, batch, steps)
  states = [_population(1, batch, steps, seed0=i)[1] for i in range(n_models)]
  compiled = train_epoch.lower(states[0], images, labels).compile()
  states = [_block(compiled(s, images, labels))[0] for s in states]  # warm-up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    for i in range(n_models):
      states[i], _ = compiled(states[i], images, labels)
    _block(states)
    times.append(time.perf_counter() - t)
  return dict(
    batch=batch,
    epoch_s=times,
    rate=n_models * steps / statistics.median(times),
    load=os.getloadavg()[0],
  )


def _torch_worker(rank, batch, steps, repeats, images, labels, mean, std, barrier, queue):
  os.environ["OMP_NUM_THREADS"] = "1"
  import torch
  import torch_cnn

  torch.set_num_threads(1)
  torch.manual_seed(rank)
  model = torch_cnn.cnn_s(images.shape[-1])
  optimizer = torch.optim.Adam(model.parameters(), lr=ADAM_LR)
  x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # uint8 NCHW
  y = torch.from_numpy(labels.astype(np.int64))
  train_epoch = torch_cnn.make_train_epoch(
    model, optimizer, x, y, batch_size=batch, steps=steps, mean=mean, std=std
  )
  generator = torch.Generator().manual_seed(rank)
  train_epoch(generator)  # warm-up
  times = []
  for _ in range(repeats):
    barrier.wait()  # every timed epoch runs with all processes busy
    t = time.perf_counter()
    loss = train_epoch(generator)
    times.append(time.perf_counter() - t)
  queue.put((rank, times, loss, rss_gib()))


def bench_torch(batch: int, steps: int, repeats: int, procs: int) -> dict:
  """PyTorch CNN-s, `procs` single-threaded processes at once; total = sum of their rates."""
  ds, images, labels = _load_subset(batch, steps)
  ctx = mp.get_context("spawn")
  barrier, queue = ctx.Barrier(procs), ctx.Queue()
  workers = [
    ctx.Process(
      target=_torch_worker,
      args=(r, batch, steps, repeats, images, labels, ds.mean[0], ds.std[0], barrier, queue),
    )
    for r in range(procs)
  ]
  for w in workers:
    w.start()
  results = sorted(queue.get(timeout=3600) for _ in workers)
  for w in workers:
    w.join()
  rates = [steps / statistics.median(times) for _, times, _, _ in results]
  return dict(
    batch=batch,
    rates=rates,
    rate=sum(rates),
    loss=np.mean([r[2] for r in results]),
    rss_gib=max(r[3] for r in results),
    load=os.getloadavg()[0],
  )


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
  """Reference: a large f32 matmul on the same backend (2*n^3 FLOPs)."""
  import jax
  import jax.numpy as jnp

  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  _block(f(a))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    _block(f(a))
    times.append(time.perf_counter() - t)
  return 2 * n**3 / statistics.median(times) / 1e9


def _ints(text: str) -> list[int]:
  return [int(v) for v in text.split(",") if v]


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--p", type=_ints, default=[1, 16, 128, 512], help="population sizes, comma-separated"
  )
  parser.add_argument("--batch", type=_ints, default=[10, 32], help="batch sizes, comma-separated")
  # 10 keeps the full run near half an hour: at P=512 one step of the vmapped engine takes ~20 s here.
  parser.add_argument(
    "--steps", type=int, default=10, help="optimizer steps per epoch (one jitted call)"
  )
  parser.add_argument(
    "--repeats", type=int, default=3, help="timed epochs after one warm-up (median)"
  )
  parser.add_argument("--seq-models", type=int, default=4, help="models in the sequential JAX loop")
  parser.add_argument(
    "--torch-procs",
    type=int,
    default=len(os.sched_getaffinity(0)),
    help="PyTorch processes (one thread each); default: usable cores",
  )
  parser.add_argument(
    "--models-per-vmap",
    type=_ints,
    default=[0, 1],
    help="engine modes, comma-separated: 0 = one vmap over the cohort, k = lax.map over chunks of k",
  )
  parser.add_argument(
    "--conv-impl",
    type=lambda t: [v for v in t.split(",") if v],
    default=["xla", "patches"],
    help="convolution implementations, comma-separated: xla, patches, taps (zoo_jax.models.fast_conv)",
  )
  parser.add_argument(
    "--devices",
    type=int,
    default=1,
    help="shard the model axis over this many forced host devices "
    "(XLA_FLAGS=--xla_force_host_platform_device_count), as config.shard does",
  )
  parser.add_argument("--skip-torch", action="store_true", help="skip the PyTorch reference")
  parser.add_argument(
    "--max-mem-frac",
    type=float,
    default=0.5,
    help="skip a P whose compiled program needs more than this fraction of free memory",
  )
  parser.add_argument("--quick", action="store_true", help="smoke run: P=1,16, batch 32, 5 steps")
  args = parser.parse_args(argv)
  if args.quick:
    args.p, args.batch, args.steps, args.repeats, args.seq_models = [1, 16], [32], 5, 3, 2
  if args.repeats < 1 or args.steps < 1:
    parser.error("--repeats and --steps must be >= 1")
  return args


def main(argv=None):
  args = parse_args(argv)
  if args.devices > 1:  # before jax is imported anywhere
    os.environ["XLA_FLAGS"] = (
      os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.devices}"
    ).strip()
  sys.path.insert(
    0, os.path.dirname(os.path.abspath(__file__))
  )  # torch_cnn, also in spawned workers
  print("== machine")
  for line in machine_info():
    print("  " + line)
  costs, n_params = cnn_s_costs(28, 28, 1)
  macs = sum(m for _, m in costs)
  _check_layer_table(n_params)
  print(
    f"== CNN-s (28x28x1, {n_params} params): forward {macs:,} MACs/image "
    f"({', '.join(f'{name}: {m:,}' for name, m in costs)})"
  )
  print(
    f"   training ~3x forward, FLOPs = 2*MACs: {6 * macs / 1e6:.3f} MFLOP per image; "
    + ", ".join(f"{6 * macs * b / 1e6:.1f} MFLOP per model-step at batch {b}" for b in args.batch)
  )
  print(
    f"== settings: P={args.p} batch={args.batch} models_per_vmap={args.models_per_vmap} "
    f"conv_impl={args.conv_impl} devices={args.devices} steps/epoch={args.steps} repeats={args.repeats} "
    f"(median after 1 warm-up), data mnist5k train[:steps*batch], tanh, Adam lr {ADAM_LR}",
    flush=True,
  )
  load = os.getloadavg()
  print(
    f"   load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores"
    + (
      "  WARNING: other processes are using the CPU; numbers will be low and noisy"
      if load[0] > 0.5
      else ""
    ),
    flush=True,
  )

  torch_ok = not args.skip_torch
  if torch_ok:
    try:
      import torch  # noqa: F401
    except ImportError:
      print(
        "   torch not installed; skipping the PyTorch reference. Install it with: "
        "pip install torch==2.13.0"
      )
      torch_ok = False

  rows, seq, ref = [], {}, {}
  for batch in args.batch:
    if torch_ok:
      ref[batch] = bench_torch(batch, args.steps, args.repeats, args.torch_procs)
      r = ref[batch]
      print(
        f"-- torch batch={batch}: {r['rate']:.0f} model-steps/s total "
        f"({' + '.join(f'{x:.0f}' for x in r['rates'])}; {args.torch_procs} procs x 1 thread), "
        f"loss {r['loss']:.3f}, load {r['load']:.1f}",
        flush=True,
      )
    seq[batch] = bench_sequential(batch, args.steps, args.repeats, args.seq_models)
    print(
      f"-- sequential JAX loop batch={batch}: {seq[batch]['rate']:.0f} model-steps/s "
      f"({args.seq_models} models, P=1 train_epoch each), load {seq[batch]['load']:.1f}",
      flush=True,
    )
    for p, mpv, impl in [
      (p, mpv, impl) for p in args.p for mpv in args.models_per_vmap for impl in args.conv_impl
    ]:
      r = bench_zoo(p, batch, args.steps, args.repeats, args.max_mem_frac, mpv, impl, args.devices)
      rows.append(r)
      if "skipped" in r:
        print(f"-- zoo_jax P={p} batch={batch}: SKIPPED, {r['skipped']}", flush=True)
        continue
      print(
        f"-- zoo_jax P={p} models_per_vmap={mpv} conv_impl={impl} devices={r['dev']} batch={batch}: {r['rate']:.0f} model-steps/s, compile {r['compile_s']:.1f} s "
        f"(trace+lower {r['lower_s']:.1f} s), epochs {', '.join(f'{t:.2f}' for t in r['epoch_s'])} s, "
        f"XLA buffers {r['xla_gib']:.2f} GiB, peak RSS {r['rss_gib']:.2f} GiB, loss {r['loss']:.3f}, "
        f"diverged {r['diverged']}, load {r['load']:.1f}",
        flush=True,
      )

  peak = matmul_gflops()
  print()
  print(
    f"== model-steps/s (one model, one Adam step); {args.steps} steps/epoch, median of {args.repeats}"
  )
  header = (
    f"{'P':>5} {'mpv':>4} {'conv':>8} {'dev':>3} {'batch':>5} {'zoo_jax':>9} {'compile s':>9} {'GFLOP/s':>8} "
    f"{'vs torch':>9} {'vs seq':>7} {'maxRSS G':>9} {'load':>5}"
  )
  print(header)
  print("-" * len(header))
  for r in rows:
    key = f"{r['p']:>5} {r['mpv']:>4} {r['conv']:>8} {r['dev']:>3} {r['batch']:>5}"
    if "skipped" in r:
      print(f"{key} {'skipped':>9} {r['compile_s']:>9.1f}")
      continue
    gflops = r["rate"] * 6 * macs * r["batch"] / 1e9
    vs_torch = f"{r['rate'] / ref[r['batch']]['rate']:.2f}x" if r["batch"] in ref else "-"
    vs_seq = f"{r['rate'] / seq[r['batch']]['rate']:.2f}x"
    print(
      f"{key} {r['rate']:>9.0f} {r['compile_s']:>9.1f} {gflops:>8.2f} "
      f"{vs_torch:>9} {vs_seq:>7} {r['rss_gib']:>9.2f} {r['load']:>5.1f}"
    )
  for batch in args.batch:
    line = f"reference batch={batch}: sequential JAX {seq[batch]['rate']:.0f}"
    if batch in ref:
      line += (
        f", torch {ref[batch]['rate']:.0f} ({args.torch_procs} procs, "
        f"{ref[batch]['rate'] * 6 * macs * batch / 1e9:.2f} GFLOP/s)"
      )
    print(line + " model-steps/s")
  print(
    "(mpv: models_per_vmap, 0 = one vmap over the cohort; conv: conv_impl; dev: devices the model axis is "
    "sharded over; GFLOP/s: 6 x forward MACs x batch x rate; maxRSS: peak resident memory of this process so far; load: 1-minute load average when each "
    "measurement ended, above ~0.5 means other processes shared the cores)"
  )
  done = [r for r in rows if "rate" in r]
  if done:
    best = max(done, key=lambda r: r["rate"] * r["batch"])
    best_gflops = best["rate"] * 6 * macs * best["batch"] / 1e9
    print(
      f"achieved: best zoo_jax {best_gflops:.2f} GFLOP/s (P={best['p']}, batch {best['batch']}) = "
      f"{best_gflops / peak:.1%} of a 1024^2 f32 matmul on this machine ({peak:.0f} GFLOP/s)"
    )


if __name__ == "__main__":
  main()
