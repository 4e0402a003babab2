"""The one training loop of every learned encoder: epochs of shuffled minibatches, resumable.

The step is a pure jitted function `step(params, opt_state, batch, key) -> (params,
opt_state, metrics)`; this driver only shuffles, slices (optionally by bucket, e.g. one
architecture per batch of a mixed pool), shows progress and checkpoints.
Each epoch may rebuild its data from a key (fresh augmentations, e.g. permuted copies
for SNE's logit invariance), and with a `checkpoint_dir` the first epoch to end a minute after the last save is
committed to Orbax (and the last epoch always), so a killed run loses at most about a minute,
resumes from its last saved epoch and ends where an uninterrupted one does.
"""

import time
from typing import Any, Callable, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

CHECKPOINT_EVERY_S = 60.0  # fit's default interval between saves

Step = Callable[[Any, Any, Any, jax.Array], tuple[Any, Any, dict[str, jax.Array]]]


def fit(
  step: Step,
  params: Any,
  opt_state: Any,
  data: Any,
  *,
  key: jax.Array,
  num_epochs: int,
  batch_size: int,
  epoch_data: Callable[[jax.Array], Any] | None = None,
  select: Callable[[Any], float] | None = None,
  buckets: np.ndarray | None = None,
  trim: Callable[[Any], Any] | None = None,
  checkpoint_dir: str | None = None,
  checkpoint_every_s: float = CHECKPOINT_EVERY_S,
  progress: bool = True,
  desc: str = "train",
) -> tuple[Any, Any, list[dict[str, float]]]:
  """Trains for `num_epochs` epochs; returns (params, opt_state, per-epoch mean metrics).

  Args:
    step: the jitted update; `batch` is `data` sliced along its leading axis.
    data: pytree of arrays with a leading example axis [N, ...] (numpy or jax), or a source with
      `shuffled_batches(key, batch_size)` and a leading `shape` (streaming.StreamedFlat).
    key: base key; epoch e shuffles with fold_in(key, e), so a resumed run draws the same batches.
    batch_size: examples per step (min(batch_size, N)); the last partial batch is dropped, so the
      step compiles once.
    epoch_data: optional `key -> data` rebuilding the data each epoch (augmentations).
    select: optional `params -> score` (higher is better, e.g. a validation tau) run after every
      epoch and recorded in the history as "select"; the params of the best-scoring epoch are
      returned instead of the last ones (and checkpointed beside them, so a resumed run keeps them).
    buckets: optional [N] ids; every batch then holds rows of one bucket only (bucketing by length:
      e.g. the models of one architecture in a mixed pool). Each bucket's rows are shuffled and cut
      into batches (its last partial batch dropped; a bucket smaller than `batch_size` is one
      batch), and the batches of all buckets are shuffled together. One bucket: the plain order.
    trim: optional `batch -> batch` applied to each batch on the host before the step (e.g. cutting
      padding that no row of the batch uses, so a bucket of small models runs at its own size; the
      step compiles once per trimmed shape).
    checkpoint_dir: if given, epochs are saved there and training resumes from the newest.
    checkpoint_every_s: an epoch is saved once this many seconds have passed since the last save
      (the last epoch always): a killed run loses at most that much training, and a large model of
      short epochs (a big autoencoder on a small zoo) is not rewritten every few steps. 0: every epoch.
  """
  leaves = jax.tree.leaves(data)
  if not leaves:
    raise ValueError("fit: `data` has no arrays.")
  num = leaves[0].shape[0]
  if num == 0:
    raise ValueError("fit: `data` holds no examples; check the zoo selection and the split.")
  batch_size = min(batch_size, num)
  if buckets is not None:
    buckets = np.asarray(buckets)
    if buckets.shape != (num,):
      raise ValueError(
        f"fit: `buckets` has shape {buckets.shape}; expected one id per row, ({num},)."
      )
    if len(np.unique(buckets)) == 1:
      buckets = None
  steps_per_epoch = (
    len(_bucketed(np.arange(num), buckets, batch_size))
    if buckets is not None
    else num // batch_size
  )
  history: list[dict[str, float]] = []
  first_epoch = 0
  manager = None
  best, best_score = params, -np.inf  # with `select`: the best epoch's params and score
  if checkpoint_dir is not None:
    manager = ocp.CheckpointManager(
      checkpoint_dir, options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    )
    latest = manager.latest_step()
    if latest is not None:
      restored = manager.restore(
        latest,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(_state(params, opt_state, best, select)),
          history=ocp.args.JsonRestore(),
        ),
      )
      params, opt_state = restored.state["params"], restored.state["opt_state"]
      history = list(restored.history)
      first_epoch = latest + 1
      if select is not None:
        best = restored.state["best"]
        best_score = max((_finite(h.get("select")) for h in history), default=-np.inf)
  last_save = time.monotonic()
  bar = tqdm(
    range(first_epoch, num_epochs),
    desc=desc,
    disable=not progress,
    leave=False,
    initial=first_epoch,
    total=num_epochs,
  )
  for epoch in bar:
    epoch_key = jax.random.fold_in(key, epoch)
    shuffle_key, data_key, step_key = jax.random.split(epoch_key, 3)
    epoch_arrays = data if epoch_data is None else epoch_data(data_key)
    sums: dict[str, float] = {}
    in_flight = (
      None  # the previous step's metrics: at most two steps (and their batches) are queued
    )
    batches = _batches(epoch_arrays, shuffle_key, batch_size, buckets)
    for i, batch in zip(range(steps_per_epoch), batches):
      if trim is not None:
        batch = trim(batch)
      params, opt_state, metrics = step(params, opt_state, batch, jax.random.fold_in(step_key, i))
      jax.block_until_ready(
        in_flight
      )  # async dispatch would otherwise hold every batch read so far
      in_flight = metrics
      for name, value in metrics.items():
        sums[name] = sums.get(name, 0.0) + value
    means = {name: float(value) / steps_per_epoch for name, value in sums.items()}
    if not all(np.isfinite(v) for v in means.values()):  # (before "select", which may be NaN)
      raise FloatingPointError(
        f"{desc}: non-finite training metrics at epoch {epoch}: {means}. Lower the learning rate."
      )
    if select is not None:
      means["select"] = float(select(params))
      if _finite(means["select"]) > best_score:
        best, best_score = params, _finite(means["select"])
    history.append({"epoch": epoch, **means})
    bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()})
    if manager is not None and (
      epoch == num_epochs - 1 or time.monotonic() - last_save >= checkpoint_every_s
    ):
      last_save = time.monotonic()
      manager.save(
        epoch,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(_state(params, opt_state, best, select)),
          history=ocp.args.JsonSave(history),
        ),
      )
      manager.wait_until_finished()
  if manager is not None:
    manager.close()
  return (params if select is None else best), opt_state, history


def _state(params: Any, opt_state: Any, best: Any, select: Callable | None) -> dict[str, Any]:
  """What a checkpoint holds: the training state, and the best params when selecting."""
  state = {"params": params, "opt_state": opt_state}
  return state if select is None else {**state, "best": best}


def _finite(score: float | None) -> float:
  """A selection score, with NaN (e.g. a constant prediction's tau) and None as the worst."""
  return -np.inf if score is None or not np.isfinite(score) else float(score)


def _batches(
  data: Any, key: jax.Array, batch_size: int, buckets: np.ndarray | None = None
) -> Iterator[Any]:
  """One epoch's shuffled minibatches: a source's own order (`shuffled_batches`, e.g.
  streaming.StreamedFlat reading blocks into a shuffle buffer), else a permutation of the rows
  (with `buckets`, cut bucket by bucket; see `fit`)."""
  if hasattr(data, "shuffled_batches"):
    if buckets is not None:
      raise ValueError("fit: `buckets` needs in-memory arrays, not a streamed source.")
    yield from data.shuffled_batches(key, batch_size)
    return
  order = np.asarray(jax.random.permutation(key, jax.tree.leaves(data)[0].shape[0]))
  if buckets is None:
    indices = [
      order[i * batch_size : (i + 1) * batch_size] for i in range(len(order) // batch_size)
    ]
  else:
    indices = _bucketed(order, buckets, batch_size)
    indices = [
      indices[i]
      for i in np.asarray(jax.random.permutation(jax.random.fold_in(key, 1), len(indices)))
    ]
  for index in indices:
    yield jax.tree.map(lambda x: x[index], data)


def _bucketed(order: np.ndarray, buckets: np.ndarray, batch_size: int) -> list[np.ndarray]:
  """The rows of `order` cut into batches of one bucket each, bucket by bucket (see `fit`)."""
  indices = []
  for bucket in np.unique(buckets):
    rows = order[buckets[order] == bucket]
    size = min(batch_size, len(rows))
    indices += [rows[i * size : (i + 1) * size] for i in range(len(rows) // size)]
  return indices


def map_batches(fn: Callable[[Any], Any], data: Any, batch_size: int = 256) -> Any:
  """`fn` over fixed-size batches of `data`'s rows, results concatenated (host numpy).

  The last batch is padded by wrapping around, so a jitted `fn` compiles once for any N.
  """
  num = jax.tree.leaves(data)[0].shape[0]
  outs = []
  for start in range(0, num, batch_size):
    index = np.arange(start, start + batch_size) % num
    outs.append(jax.tree.map(np.asarray, fn(jax.tree.map(lambda x: x[index], data))))
  return jax.tree.map(lambda *xs: np.concatenate(xs)[:num], *outs)
