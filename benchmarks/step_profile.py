"""Where a CPU training step's time goes: a per-op breakdown from JAX's profiler, per conv form.

Times one core's training epochs of CNN-s (tanh, Adam; the train command's inner loop with
models_per_vmap=1) on mnist5k, traces one of them with `jax.profiler` (XLA:CPU records every
executed HLO op), and sorts the ops into what they do, read from the compiled HLO: the
convolutions' matmuls, gathering the patches, summing the patches' gradient back onto the image,
layout transposes, the max-pool and its gradient, the activation, the batch gather, and the
rest (optimizer update, loss, biases, loop bookkeeping). Prints ms per step and the share of
each, the top ops, and images/s for each conv_impl and batch size side by side.

  taskset -c 0 python benchmarks/step_profile.py                    # patches and taps, batch 10 and 32
  taskset -c 0 python benchmarks/step_profile.py --impl=taps --batch=32 --top=20
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")  # one core, as a shard

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# (category, test on the opcodes an executed op runs). XLA fuses ops of several kinds into one
# (e.g. conv_1's patches with the pool and tanh before them): each counts once, under the first
# category that matches, in this order.
CATEGORIES = (
  ("conv matmuls", lambda ops: "dot" in ops or "convolution" in ops),
  (  # the patches' gradient back onto the image: shifted slices added (pads or in-place updates)
    "patch gradient sum",
    lambda ops: "add" in ops and ("dynamic-update-slice" in ops or "pad" in ops),
  ),
  ("gather patches", lambda ops: "concatenate" in ops or ops <= {"slice", "bitcast", "pad"}),
  ("batch gather", lambda ops: "gather" in ops),
  (  # forward max; gradient: which input was the max (compare), shared among ties (divide)
    "max-pool and its gradient",
    lambda ops: (
      {"reduce_max", "select-and-scatter"} & ops
      or {"compare", "select"} <= ops
      or {"compare", "convert"} <= ops
      or {"reduce", "divide"} <= ops
    ),
  ),
  ("activation", lambda ops: "tanh" in ops),
  ("layout transposes", lambda ops: "transpose" in ops),
)
OTHER = "rest: optimizer, loss, biases, loop"


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--impl", default="patches,taps", help="conv_impl values, comma-separated")
  parser.add_argument("--batch", default="10,32", help="batch sizes, comma-separated")
  parser.add_argument("--models", type=int, default=2, help="models trained one after another")
  parser.add_argument("--steps", type=int, default=100, help="steps per epoch (x batch <= 3,500)")
  parser.add_argument("--repeats", type=int, default=3, help="timed epochs (the best is kept)")
  parser.add_argument("--top", type=int, default=8, help="single ops listed per run")
  return parser.parse_args(argv)


def _computations(hlo: str) -> dict[str, str]:
  """Computation name -> its body text, from compiled HLO text."""
  bodies, name, lines = {}, None, []
  for line in hlo.splitlines():
    head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
    if head:
      name, lines = head.group(1), []
    elif line.startswith("}") and name:
      bodies[name], name = "\n".join(lines), None
    elif name:
      lines.append(line)
  return bodies


def _op_kinds(hlo: str) -> dict[str, set]:
  """Executed op name -> the HLO opcodes it runs (a fusion: those of its fused computation;
  a reduce whose reducer takes a maximum: "reduce_max")."""
  bodies = _computations(hlo)
  opcode = re.compile(r"= [^=]*?\b([a-z][a-z\-_]*)\(")

  def opcodes(text: str) -> set:
    ops = set()
    for line in text.splitlines():
      op = opcode.search(line)
      if op:
        ops.add(op.group(1))
      reducer = re.search(r"to_apply=%?([\w.\-]+)", line)
      if (
        op and op.group(1) == "reduce" and reducer and "maximum" in bodies.get(reducer.group(1), "")
      ):
        ops.add("reduce_max")
    return ops

  kinds = {}
  for body in bodies.values():
    for line in body.splitlines():
      m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = ", line)
      if not m:
        continue
      called = re.search(r"calls=%?([\w.\-]+)", line)
      kinds[m.group(1)] = opcodes(line) | (
        opcodes(bodies[called.group(1)]) if called and called.group(1) in bodies else set()
      )
  return kinds


def _category(ops: set) -> str:
  ops = ops - {"fusion", "parameter", "constant"}
  for name, test in CATEGORIES:
    if test(ops):
      return name
  return OTHER


def profile(impl: str, batch: int, args) -> dict:
  import jax
  from population_throughput import _population

  train_epoch, state, images, labels = _population(
    args.models, batch, args.steps, models_per_vmap=1, conv_impl=impl
  )
  kinds = _op_kinds(train_epoch.lower(state, images, labels).compile().as_text())
  state, metrics = train_epoch(state, images, labels)  # compile and warm up
  jax.block_until_ready(metrics)
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    state, metrics = train_epoch(state, images, labels)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  with tempfile.TemporaryDirectory() as folder:
    with jax.profiler.trace(folder, create_perfetto_trace=True):
      state, metrics = train_epoch(state, images, labels)
      jax.block_until_ready(metrics)
    (trace,) = glob.glob(os.path.join(folder, "plugins/profile/*/perfetto_trace.json.gz"))
    events = json.load(gzip.open(trace))["traceEvents"]
  per_op = collections.Counter()
  for event in events:
    if event.get("ph") == "X" and event.get("name") in kinds:
      per_op[event["name"]] += event.get("dur", 0)
  steps = args.models * args.steps
  per_category = collections.Counter()
  for name, us in per_op.items():
    per_category[_category(kinds[name])] += us
  return {
    "impl": impl,
    "batch": batch,
    "ms_per_step": min(times) / steps * 1e3,
    "images_per_s": steps * batch / min(times),
    "traced_ms_per_step": sum(per_op.values()) / steps / 1e3,
    "categories": {k: v / steps / 1e3 for k, v in per_category.most_common()},
    "top": [
      (name, us / steps / 1e3, _category(kinds[name])) for name, us in per_op.most_common(args.top)
    ],
  }


def main(argv=None):
  args = parse_args(argv)
  runs = [
    profile(impl, int(batch), args)
    for batch in args.batch.split(",")
    for impl in args.impl.split(",")
  ]
  print(f"== one core, CNN-s on mnist5k, {args.models} models x {args.steps} steps per timed epoch")
  for run in runs:
    print(
      f"\n-- conv_impl={run['impl']} batch={run['batch']}: {run['ms_per_step']:.3f} ms/step, "
      f"{run['images_per_s']:,.0f} images/s (ops traced: {run['traced_ms_per_step']:.3f} ms/step)"
    )
    for name, ms in run["categories"].items():
      print(f"   {name:38s} {ms:7.3f} ms  {ms / run['traced_ms_per_step']:5.1%}")
    print("   top ops:", "; ".join(f"{n} {ms:.3f} ms ({c})" for n, ms, c in run["top"]))
  base = {(r["batch"]): r for r in runs if r["impl"] == runs[0]["impl"]}
  print()
  for run in runs:
    ratio = base[run["batch"]]["ms_per_step"] / run["ms_per_step"]
    print(f"batch {run['batch']:3d} {run['impl']:8s} {ratio:5.2f}x {runs[0]['impl']}'s rate")


if __name__ == "__main__":
  main()
