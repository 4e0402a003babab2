"""Throughput of zoo_jax.weights on a zoo of CNN-s models, against a per-model numpy loop.

    python benchmarks/weights_throughput.py

Builds 1,000 CNN-s models (one vmapped init), then times, for the whole zoo:
  - tokenise: jit(vmap(tokenize)) vs a Python loop of numpy per-model tokenisation;
  - permute + tokenise: the random-permutation augmentation then tokenisation, same two ways.
Compilation and a warm-up call are excluded; each row reports the median of several repeats.
"""

import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax import weights
from zoo_jax.models import get_model

NUM_MODELS = 1000
JAX_REPEATS = 9
NUMPY_REPEATS = 5
LAYERS = ("conv_0", "conv_1", "conv_2", "dense_0", "dense_1")  # CNN-s, in network order


def numpy_tokenize(tree: dict, dim: int) -> np.ndarray:
  """One model's neuron tokens [T, dim]: per unit its incoming weights, then its bias."""
  rows = []
  for name in LAYERS:
    kernel, bias = tree[name]["kernel"], tree[name]["bias"]
    units = kernel.shape[-1]
    rows.append(np.concatenate([kernel.reshape(-1, units).T, bias[:, None]], axis=1))
  tokens = np.zeros((sum(r.shape[0] for r in rows), dim), np.float32)
  start = 0
  for r in rows:
    tokens[start : start + r.shape[0], : r.shape[1]] = r
    start += r.shape[0]
  return tokens


def numpy_permute(tree: dict, rng: np.random.Generator) -> dict:
  """One model with every hidden layer's units randomly permuted (conv -> dense: rows s * C + c)."""
  tree = {name: dict(layer) for name, layer in tree.items()}
  for name, following in zip(LAYERS[:-1], LAYERS[1:]):
    perm = rng.permutation(tree[name]["bias"].shape[0])
    tree[name]["kernel"] = tree[name]["kernel"][..., perm]
    tree[name]["bias"] = tree[name]["bias"][perm]
    kernel = tree[following]["kernel"]
    if kernel.ndim == 4:
      kernel = kernel[:, :, perm, :]
    elif name.startswith("conv"):
      rows, out = kernel.shape
      kernel = kernel.reshape(-1, perm.size, out)[:, perm, :].reshape(rows, out)
    else:
      kernel = kernel[perm]
    tree[following]["kernel"] = kernel
  return tree


def median_seconds(fn, repeats: int) -> float:
  fn()  # warm-up (and compilation) excluded
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  model = get_model("cnn_s", activation="tanh", init="kaiming_uniform")
  keys = jax.random.split(jax.random.key(0), NUM_MODELS)
  start = time.perf_counter()
  zoo = jax.jit(jax.vmap(lambda k: model.init(k, jnp.zeros((1, 28, 28, 1)))))(keys)
  zoo = jax.block_until_ready(zoo)
  init_seconds = time.perf_counter() - start
  spec = weights.make_spec(zoo)
  dim = weights.token_dim(spec)
  # The numpy loop gets plain per-model numpy dicts, prepared outside the timings.
  host = jax.tree.map(np.asarray, zoo["params"])
  models = [
    {name: {p: host[name][p][i] for p in ("kernel", "bias")} for name in LAYERS}
    for i in range(NUM_MODELS)
  ]

  tokenize_one = lambda p: weights.tokenize(p)[0].values
  augment_one = lambda k, p: weights.tokenize(weights.random_permutation(k, p))[0].values
  tokenize, augment = jax.jit(jax.vmap(tokenize_one)), jax.jit(jax.vmap(augment_one))
  # The same functions on the [P, ...] zoo directly (leading batch axis, no vmap); the
  # batched random_permutation splits its key per model, so it equals the vmapped one.
  tokenize_batched, augment_batched = jax.jit(tokenize_one), jax.jit(augment_one)
  aug_keys = jax.random.split(jax.random.key(1), NUM_MODELS)

  # The two implementations agree before anything is timed.
  reference = np.stack([numpy_tokenize(m, dim) for m in models])
  np.testing.assert_array_equal(np.asarray(tokenize(zoo)), reference)
  np.testing.assert_array_equal(np.asarray(tokenize_batched(zoo)), reference)
  np.testing.assert_array_equal(
    np.asarray(augment(aug_keys, zoo)), np.asarray(augment_batched(jax.random.key(1), zoo))
  )
  rng = np.random.default_rng(0)

  jax_time = lambda fn, *args: median_seconds(lambda: jax.block_until_ready(fn(*args)), JAX_REPEATS)
  rows = [
    (
      "tokenise",
      jax_time(tokenize, zoo),
      jax_time(tokenize_batched, zoo),
      median_seconds(lambda: np.stack([numpy_tokenize(m, dim) for m in models]), NUMPY_REPEATS),
    ),
    (
      "permute + tokenise",
      jax_time(augment, aug_keys, zoo),
      jax_time(augment_batched, jax.random.key(1), zoo),
      median_seconds(
        lambda: np.stack([numpy_tokenize(numpy_permute(m, rng), dim) for m in models]),
        NUMPY_REPEATS,
      ),
    ),
  ]

  print(
    f"machine   {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
  )
  print(
    f"jax       {jax.__version__}, backend {jax.default_backend()} "
    f"({jax.devices()[0].device_kind}), numpy {np.__version__}"
  )
  print(
    f"zoo       {NUM_MODELS} CNN-s models, {spec.size} weights each, tokens "
    f"[{NUM_MODELS}, {reference.shape[1]}, {dim}]; vmapped init {init_seconds:.1f} s "
    f"(with compile)"
  )
  print(
    f"timings   median of {JAX_REPEATS} (jax) / {NUMPY_REPEATS} (numpy) runs, warm-up excluded\n"
  )
  print(
    f"{'operation (all models)':<22}{'numpy loop':>12}{'jit+vmap':>10}{'speed-up':>10}"
    f"{'jit, [P,...]':>14}{'speed-up':>10}{'models/s':>10}"
  )
  for name, vmap_seconds, batched_seconds, numpy_seconds in rows:
    print(
      f"{name:<22}{numpy_seconds * 1e3:>9.1f} ms{vmap_seconds * 1e3:>7.1f} ms"
      f"{numpy_seconds / vmap_seconds:>9.1f}x{batched_seconds * 1e3:>11.1f} ms"
      f"{numpy_seconds / batched_seconds:>9.1f}x{NUM_MODELS / vmap_seconds:>10,.0f}"
    )
  print("\nspeed-up = numpy loop time / jax time; models/s for jit+vmap.")


if __name__ == "__main__":
  main()
