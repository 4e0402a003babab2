"""Zoos larger than memory: a zoo's (model, epoch) states as flat weights read from disk.

`StreamedFlat` stands where an [N, n] float32 array of `weights.flatten` vectors does:

- `x[index]` (ints, slices) reads only those states: for each (epoch, cohort) the covering
  row range of every leaf, one contiguous TensorStore read (no scattered fancy-indexed reads);
  `training.map_batches` (embedding every state) reads the zoo front to back this way.
- `x.shuffled_batches(key, batch_size)` is the training order (`encoders.training.fit` uses
  it): whole blocks of rows of one (epoch, cohort) are read in a random block order into a
  shuffle buffer of at most `buffer_rows` states, reused for the whole epoch, and shuffled
  there; minibatches are drawn from the buffer. When the buffer holds every state, the order
  is `jax.random.permutation(key, N)`, the in-memory order, so both draw the same batches.
- `x.rows(mask)` is a view on a subset of the states (a train/test split), read on demand too.

Memory is bounded by the buffer plus one block and one batch, not by the zoo. Why a plain
generator and not grain or tf.data: the source is one sequential reader over checkpoint steps
(TensorStore already reads chunks with its own I/O threads), the step is a jitted function fed
from the host, and the project targets 2-core machines where worker processes would only
compete with XLA; grain is not installed and tf.data would pull in TensorFlow. The source keeps
the random-access protocol (len, getitem) grain's data sources follow, so it can be wrapped later.
"""

import ctypes
import sys
from typing import Any, Iterator

import jax
import numpy as np
import pandas as pd
import tensorstore as ts

from zoo_jax import weights
from zoo_jax import zoo as zoo_lib
from zoo_jax.weights import flat as flat_lib
from zoo_jax.weights import spec as weight_spec

# States per block (rows of one (epoch, cohort) read at once); lowered to fit the buffer.
BLOCK_ROWS = 64

# glibc's mallopt parameters, and the values of MALLOC_TRIM_THRESHOLD_=131072
# MALLOC_MMAP_THRESHOLD_=131072 MALLOC_ARENA_MAX=2 (bytes, bytes, arenas).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_BOUNDED_MALLOC = (
  (_M_TRIM_THRESHOLD, 128 * 1024),
  (_M_MMAP_THRESHOLD, 128 * 1024),
  (_M_ARENA_MAX, 2),
)


def bound_malloc() -> bool:
  """Makes glibc's malloc hand freed memory back to the OS, for the rest of the process.

  With glibc's defaults, freed large blocks (a jitted step's host temporaries, the blocks read
  from disk) stay in the heap, and a streamed encoding's RSS creeps up with the zoo's size
  instead of staying within the shuffle buffer (benchmarks/stream_encode.py measures both).
  Blocks of 128 KiB or more are then mmapped and unmapped when freed, the heap is trimmed
  above 128 KiB of free top memory, and at most 2 arenas are used: what the environment
  variables MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072 MALLOC_ARENA_MAX=2
  do at start-up. A process-wide setting, so commands call it (zoo_jax.encode with
  config.stream), not library functions. Returns False where malloc is not glibc's.
  """
  if not sys.platform.startswith("linux"):
    return False
  try:
    mallopt = ctypes.CDLL("libc.so.6").mallopt
  except (OSError, AttributeError):  # another libc (musl) or none
    return False
  return all(mallopt(param, value) == 1 for param, value in _BOUNDED_MALLOC)


def block_order(
  key: jax.Array, blocks: list[np.ndarray], buffer_rows: int
) -> list[tuple[list[int], np.ndarray]]:
  """One epoch's schedule: [(block ids read into the buffer, buffer positions in draw order)].

  blocks: table rows of each block (the rows a block read puts into the buffer, in that order).
  Every row is drawn once per epoch; the epoch's order is the concatenation over windows of
  `rows_of_window[positions]`. With all rows in one buffer it is `jax.random.permutation(key, N)`.
  """
  num = sum(len(b) for b in blocks)
  if num <= buffer_rows:  # the buffer holds the zoo: a full shuffle, as in memory
    read = np.concatenate(blocks)  # table row at each buffer position
    sorter = np.argsort(read, kind="stable")  # positions in table-row order
    return [(list(range(len(blocks))), sorter[np.asarray(jax.random.permutation(key, num))])]
  # Host-side shuffles seeded by the key: jax.random.permutation would compile once per window size.
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
  windows, current, size = [], [], 0
  for b in rng.permutation(len(blocks)).tolist():
    if size + len(blocks[b]) > buffer_rows and current:
      windows.append(current)
      current, size = [], 0
    current.append(b)
    size += len(blocks[b])
  windows.append(current)
  schedule = []
  for window in windows:
    read = np.concatenate([blocks[b] for b in window])
    schedule.append((window, np.argsort(read, kind="stable")[rng.permutation(len(read))]))
  return schedule


class StreamedFlat:
  """A zoo's states (rows of `table`: model_id, epoch) as flat weights [N, n] read on demand.

  Args:
    zoo: an open `zoo.Zoo`; its OCDBT/TensorStore steps are read directly.
    table: one row per state, with `model_id` and `epoch` columns (properties.state_table).
    buffer_mb: size of the shuffle buffer of `shuffled_batches` in MB of float32 states (at
      least one state); it bounds the memory of training on the zoo.
  """

  def __init__(
    self,
    zoo: zoo_lib.Zoo,
    table: pd.DataFrame,
    buffer_mb: float = 64.0,
    *,
    _shared: dict | None = None,
  ):
    if not buffer_mb > 0:
      raise ValueError(f"buffer_mb must be > 0, got {buffer_mb!r}.")
    if not len(table):
      raise ValueError(f"No states to stream from zoo {zoo.workdir!r}: the selection is empty.")
    self.zoo, self.buffer_mb = zoo, buffer_mb
    self.epoch = table["epoch"].to_numpy(np.int64)
    rows = zoo.models.set_index("model_id").loc[table["model_id"].to_numpy()]
    self.cohort = rows["cohort"].to_numpy(np.int64)
    self.cohort_index = rows["cohort_index"].to_numpy(np.int64)
    if _shared is None:  # handles, context and layout are shared by every view on the same zoo
      # No chunk cache and one I/O thread each: memory stays that of the rows being read.
      context = ts.Context(
        {
          "cache_pool": {"total_bytes_limit": 0},
          "data_copy_concurrency": {"limit": 1},
          "file_io_concurrency": {"limit": 1},
        }
      )
      first = table.iloc[0]
      spec = weights.flatten(zoo.params([int(first["model_id"])], int(first["epoch"])))[1]
      _shared = {"handles": {}, "context": context, "spec": spec}
    self._shared = _shared
    self.spec = _shared["spec"]
    self.buffer_rows = max(1, int(buffer_mb * 2**20) // (4 * self.spec.size))
    self.shape, self.dtype, self.ndim = (len(table), self.spec.size), np.dtype(np.float32), 2
    self._table = table

  def __len__(self) -> int:
    return self.shape[0]

  def rows(self, keep: np.ndarray) -> "StreamedFlat":
    """The states where `keep` (a boolean mask [N] or indices) holds, still read on demand."""
    return StreamedFlat(
      self.zoo,
      self._table.iloc[np.arange(len(self))[keep]].reset_index(drop=True),
      self.buffer_mb,
      _shared=self._shared,
    )

  # -------------------------------------------------------------- reading

  def _leaves(self, epoch: int, cohort: int) -> list[tuple[Any, weight_spec.ParamSpec]]:
    """The TensorStore handle of every parameter of (epoch, cohort), with its place in the flat vector."""
    handles = self._shared["handles"]
    if (epoch, cohort) not in handles:
      opened = zoo_lib.open_cohorts(
        self.zoo._manager, epoch, [cohort], context=self._shared["context"]
      )
      if opened is None:
        raise ValueError(
          f"Zoo {self.zoo.workdir!r} was written in an older checkpoint layout; streaming needs "
          "TensorStore (OCDBT) steps. Rewrite it with `python -m zoo_jax.zoo slice`."
        )
      tree, _ = weight_spec.unwrap(opened[cohort])
      leaves = []
      for layer in self.spec.layers:
        for p in layer.params:
          node = tree
          for name in layer.path + (p.name,):
            node = node[name]
          leaves.append((node, p))
      handles[epoch, cohort] = leaves
    return handles[epoch, cohort]

  def _read_into(self, out: np.ndarray, epoch: int, cohort: int, index: np.ndarray) -> None:
    """Writes the states at `index` (sorted cohort rows of one (epoch, cohort)) into `out` [len(index), n].

    Each leaf's covering row range [min, max] is read at once (whole chunks, sequentially) and
    the wanted rows picked from it.
    """
    lo, hi = int(index[0]), int(index[-1]) + 1
    leaves = self._leaves(epoch, cohort)
    contiguous = hi - lo == len(index)
    futures = [handle[lo:hi].read() for handle, _ in leaves]
    for future, (_, p) in zip(futures, leaves):
      block = future.result().reshape(hi - lo, p.size)
      out[:, p.offset : p.offset + p.size] = block if contiguous else block[index - lo]

  def _groups(self, rows: np.ndarray):
    """(epoch, cohort, positions in `rows`, cohort rows) with cohort rows sorted, per (epoch, cohort)."""
    key = self.epoch[rows] * (int(self.cohort.max()) + 1) + self.cohort[rows]
    for k in np.unique(key):
      at = np.flatnonzero(key == k)
      at = at[np.argsort(self.cohort_index[rows[at]], kind="stable")]
      yield (
        int(self.epoch[rows[at[0]]]),
        int(self.cohort[rows[at[0]]]),
        at,
        self.cohort_index[rows[at]],
      )

  def read(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The states at table rows `rows` as float32 [len(rows), n], written into `out` if given."""
    rows = np.asarray(rows, np.int64).reshape(-1)
    out = np.empty((len(rows), self.spec.size), np.float32) if out is None else out
    for epoch, cohort, at, index in self._groups(rows):
      if np.all(np.diff(at) == 1):  # one run of `out`: written in place
        self._read_into(out[at[0] : at[-1] + 1], epoch, cohort, index)
      else:
        part = np.empty((len(at), self.spec.size), np.float32)
        self._read_into(part, epoch, cohort, index)
        out[at] = part
    return out

  def __getitem__(self, index) -> np.ndarray:
    return self.read(np.arange(len(self))[index])

  def __array__(self, dtype=None, copy=None):  # the whole zoo: only for zoos that fit
    return self[:].astype(dtype or self.dtype)

  # -------------------------------------------------------------- training order

  def blocks(self) -> list[np.ndarray]:
    """Table rows of each block: up to BLOCK_ROWS (and buffer_rows) states of one (epoch, cohort)."""
    size = max(1, min(BLOCK_ROWS, self.buffer_rows))
    out = []
    for _, _, at, _ in self._groups(np.arange(len(self))):
      out.extend(at[i : i + size] for i in range(0, len(at), size))
    return out

  def shuffled_batches(self, key: jax.Array, batch_size: int) -> Iterator[np.ndarray]:
    """One epoch's minibatches [batch_size, n] (the last partial one dropped), in `epoch_order`.

    Blocks are read whole into one reused buffer; batches are gathered from it.
    """
    blocks = self.blocks()
    buffer = np.empty((min(self.buffer_rows, len(self)), self.spec.size), np.float32)
    carry = np.empty(
      (0, self.spec.size), np.float32
    )  # the rows of a batch begun in the last window
    for window, positions in block_order(key, blocks, self.buffer_rows):
      start = 0
      for b in window:  # blocks in read order; each block's rows are consecutive in the buffer
        rows = blocks[b]
        self.read(rows, out=buffer[start : start + len(rows)])
        start += len(rows)
      i = 0
      if len(carry):
        need = batch_size - len(carry)
        carry = np.concatenate([carry, buffer[positions[:need]]])
        i = min(need, len(positions))
        if len(carry) == batch_size:
          yield carry
          carry = np.empty((0, self.spec.size), np.float32)
      while i + batch_size <= len(positions):
        yield buffer[positions[i : i + batch_size]]
        i += batch_size
      if i < len(positions):
        carry = np.concatenate([carry, buffer[positions[i:]]])

  def epoch_order(self, key: jax.Array) -> np.ndarray:
    """The table rows in the order `shuffled_batches(key, ...)` draws them: a permutation of N."""
    blocks = self.blocks()
    return np.concatenate(
      [
        np.concatenate([blocks[b] for b in window])[positions]
        for window, positions in block_order(key, blocks, self.buffer_rows)
      ]
    )


def layer_variances(
  flat: Any, spec: weights.WeightSpec, block_bytes: int = flat_lib.BLOCK_BYTES
) -> np.ndarray:
  """Each layer's weight variance over the states of `flat` [N, n] (array or StreamedFlat): [L].

  What `weights.layer_variances` (and `token_layer_variances` on the tokens) computes for the
  whole zoo, the hyper-representation's layer normaliser, accumulated over blocks of states of
  about `block_bytes` in float64 (Chan et al.'s pairwise update), so the zoo need not be in memory.
  """
  count, mean, m2 = (np.zeros(len(spec.layers)) for _ in range(3))
  for x in flat_lib.row_blocks(flat, spec, block_bytes):
    if not len(x):
      continue  # an empty zoo: 0 / 0, NaN
    for l, layer in enumerate(spec.layers):
      part = x[:, layer.offset : layer.offset + layer.size].astype(np.float64)
      n, mu = part.size, part.mean()
      delta, total = mu - mean[l], count[l] + n
      m2[l] += np.square(part - mu).sum() + delta**2 * count[l] * n / total
      mean[l] += delta * n / total
      count[l] = total
  return (m2 / count).astype(np.float32)
