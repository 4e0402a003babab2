"""The Orbax store of a zoo: checkpoint managers, the metadata kept with them, and reads of
selected rows of a step (TensorStore), so a reader holds only what it selected."""

import json
import os
from typing import Any, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
import tensorstore as ts

from zoo_jax.zoo.files import CHECKPOINTS_DIR


# Weights are stored in chunks of at most this many bytes, split along the model axis first, so
# that reading a few models of a big cohort reads a few chunks, not the whole leaf (Zoo.params).
# 64 KiB: a few CNN-s models per chunk of the largest leaf, so an encoder's random minibatches
# (streaming.StreamedFlat) read little beyond the models they draw; Orbax warns below 1 MiB.
CHUNK_BYTES = 1 << 16


def _this_process_only() -> ocp.options.MultiprocessingOptions:
  """Orbax options under which this process reads (and writes) alone, with no barrier."""
  if jax.process_count() == 1:
    return ocp.options.MultiprocessingOptions()
  return ocp.options.MultiprocessingOptions(
    primary_host=jax.process_index(), active_processes={jax.process_index()}
  )


def open_manager(
  directory: str, metadata: dict | None = None, collective: bool = False, **options
) -> ocp.CheckpointManager:
  """`metadata` (JSON) is kept once, when the folder is created: the zoo's config and models table.

  In a multi-process run only a `collective` manager (ZooWriter's: every process saves its
  shards) synchronises the processes; any other is this process's own, so that readers and
  process 0's table checks need no other process.
  """
  if not collective:
    options["multiprocessing_options"] = _this_process_only()
  return ocp.CheckpointManager(
    directory,
    options=ocp.CheckpointManagerOptions(**options),
    metadata=metadata,
    item_handlers=ocp.StandardCheckpointHandler(),
  )


def store_metadata(config: dict, models: pd.DataFrame) -> dict:
  """What checkpoints/ keeps besides the weights, so config.json and models.csv can be rebuilt exactly."""
  return {"config": config, "models_csv": models.to_csv(index=False)}


def read_stored(manager: ocp.CheckpointManager) -> dict:
  """The metadata of store_metadata, or {} for zoos written before zoo_jax kept it."""
  try:
    return dict(manager.metadata().custom_metadata or {})
  except Exception:  # pylint: disable=broad-except  # absent or unreadable: nothing stored
    return {}


def stored_metadata(workdir: str) -> dict:
  """The config and models table kept in WORKDIR/checkpoints/ ({} if none)."""
  directory = os.path.join(workdir, CHECKPOINTS_DIR)
  if not os.path.isdir(directory):
    return {}
  with open_manager(directory, create=False) as manager:
    return read_stored(manager)


def committed_epochs(workdir: str) -> list[int]:
  """The epochs whose checkpoint step is committed (Orbax finalised it), ascending."""
  directory = os.path.join(workdir, CHECKPOINTS_DIR)
  if not os.path.isdir(directory):
    return []
  with open_manager(directory, create=False) as manager:
    return sorted(manager.all_steps())


def restore_numpy(manager: ocp.CheckpointManager, step: int) -> Any:
  """Restores a step as host numpy arrays, whatever devices or mesh it was saved from."""
  try:
    target = jax.tree.map(lambda m: np.empty(m.shape, m.dtype), manager.item_metadata(step))
    return manager.restore(step, args=ocp.args.StandardRestore(target))
  except Exception as error:  # orbax/tensorstore raise many types for damaged files
    raise _unreadable(manager, step, error) from error


def _unreadable(manager: ocp.CheckpointManager, step: int, error: Exception) -> ValueError:
  return ValueError(
    f"Checkpoint step {step} in {manager.directory} is unreadable (truncated or corrupted: "
    f"{type(error).__name__}: {str(error)[:200]}). Other epochs are unaffected; delete "
    "that step folder and re-run training to rewrite it."
  )


def item_metadata(manager: ocp.CheckpointManager, step: int) -> Any:
  """The tree of a step's array metadata (shapes, dtypes); a clear error for a damaged step."""
  try:
    return manager.item_metadata(step)
  except Exception as error:  # orbax/tensorstore raise many types for damaged files
    raise _unreadable(manager, step, error) from error


def open_cohorts(
  manager: ocp.CheckpointManager,
  step: int,
  cohorts: Sequence[int],
  part: str = "params",
  context: ts.Context | None = None,
) -> dict[int, Any] | None:
  """The `part` ("params" or "metrics") leaves of `cohorts` at `step`, opened as TensorStore arrays
  (nothing read yet); None for a step in an older, non-OCDBT layout."""
  step_dir = os.path.join(os.path.abspath(str(manager.directory)), str(step), "default")
  with open(os.path.join(step_dir, "_METADATA")) as f:
    stored = json.load(f)
  if not stored.get("use_ocdbt", False):
    return None
  metadata = item_metadata(manager, step)
  context = context or ts.Context()
  driver = "zarr3" if stored.get("use_zarr3") else "zarr"

  def open_leaf(path):
    name = ".".join(str(getattr(k, "key", k)) for k in path)
    spec = {
      "driver": driver,
      "kvstore": {"driver": "ocdbt", "base": f"file://{step_dir}/", "path": name},
    }
    return ts.open(spec, read=True, open=True, context=context)

  futures = {
    c: jax.tree_util.tree_map_with_path(
      lambda p, _: open_leaf((str(c), part) + p), metadata[str(c)][part]
    )
    for c in cohorts
  }
  return {c: jax.tree.map(lambda f: f.result(), tree) for c, tree in futures.items()}


def read_rows(opened: dict[int, Any], rows: dict[int, np.ndarray | None]) -> dict[int, Any]:
  """Reads `rows` (None: all) of every opened leaf; only the chunks holding them are read."""
  futures = {
    c: jax.tree.map(lambda t: (t if r is None else t[np.asarray(r, np.int64)]).read(), opened[c])
    for c, r in rows.items()
  }
  return {c: jax.tree.map(lambda f: np.asarray(f.result()), tree) for c, tree in futures.items()}


def read_cohorts(
  manager: ocp.CheckpointManager,
  step: int,
  rows: dict[int, np.ndarray | None],
  part: str = "params",
) -> dict[int, Any]:
  """The `part` ("params" or "metrics") of the given cohorts at `step`, only `rows` of each leaf.

  rows: cohort -> indices into its model axis (None: all rows). Returns cohort -> pytree of
  numpy arrays [len(rows), ...]. Each leaf is opened as a TensorStore array and only the chunks
  that hold those rows are read, so the memory used is that of the selection, not of the step.
  """
  try:
    opened = open_cohorts(manager, step, list(rows), part)
    if opened is None:  # an older layout: read the step whole
      tree = restore_numpy(manager, step)
      return {
        c: jax.tree.map(lambda x: x if r is None else x[r], tree[str(c)][part])
        for c, r in rows.items()
      }
    return read_rows(opened, rows)
  except Exception as error:  # orbax/tensorstore raise many types for damaged files
    raise _unreadable(manager, step, error) from error


def restore_metrics(manager: ocp.CheckpointManager, step: int) -> dict:
  """The per-cohort metrics of a step ({cohort: {name: [P]}}), without reading its weights."""
  try:
    target = {
      c: {"metrics": jax.tree.map(lambda m: np.empty(m.shape, m.dtype), tree["metrics"])}
      for c, tree in manager.item_metadata(step).items()
    }
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), target)
    alone = _this_process_only()  # process 0 checks tables alone in a multi-process run
    with ocp.Checkpointer(
      ocp.PyTreeCheckpointHandler(multiprocessing_options=alone), multiprocessing_options=alone
    ) as checkpointer:  # a partial restore: the metrics only
      tree = checkpointer.restore(
        os.path.join(manager.directory, str(step), "default"),
        args=ocp.args.PyTreeRestore(item=target, restore_args=restore_args, partial_restore=True),
      )
  except Exception as error:  # orbax/tensorstore raise many types for damaged files
    raise ValueError(
      f"Checkpoint step {step} in {manager.directory} is unreadable (truncated or corrupted: "
      f"{type(error).__name__}: {str(error)[:200]})."
    ) from error
  return {c: dict(v["metrics"]) for c, v in tree.items()}
