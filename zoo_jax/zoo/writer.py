"""ZooWriter: every command that produces models (training, sampling, conversion, merging,
sparsification, slicing) commits them through it, epoch by epoch."""

import logging
import os
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

from zoo_jax import errors
from zoo_jax.zoo.files import CHECKPOINTS_DIR, STATE_DIR
from zoo_jax.zoo.store import CHUNK_BYTES, open_manager, restore_metrics


class _SmallChunksAreIntended(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return "target_byte_size too small" not in record.getMessage()


class ZooWriter:
  """Writes a zoo epoch by epoch; every epoch is committed whole or not at all.

  In a multi-process run every process holds one and saves its own rows of the sharded
  arrays (Orbax commits a step once all processes have written theirs).
  `training_state=False`: a weights-only zoo (a slice), no state/ folder.
  """

  def __init__(self, workdir: str, metadata: dict | None = None, training_state: bool = True):
    """`metadata`: store_metadata(config, models) of a new zoo (kept when checkpoints/ is created)."""
    self.workdir = workdir
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _SmallChunksAreIntended) for f in absl_logger.filters):
      absl_logger.addFilter(_SmallChunksAreIntended())  # CHUNK_BYTES is small on purpose
    self._checkpoints = open_manager(
      os.path.join(workdir, CHECKPOINTS_DIR), metadata, True, create=True, max_to_keep=None
    )
    # Two states kept, so a corrupted newest one still leaves an epoch to resume from.
    self._state = (
      open_manager(os.path.join(workdir, STATE_DIR), collective=True, create=True, max_to_keep=2)
      if training_state
      else None
    )

  def restore_state(self, abstract_state: Any) -> tuple[int, Any] | None:
    """(epoch, state) of the newest intact training state, or None for a new run.

    A state step that fails to restore (truncated, corrupted) is reported and deleted,
    with every later weights step, so the run falls back to the previous epoch.
    """
    for step in sorted(self._state.all_steps(), reverse=True):
      if step not in self._checkpoints.all_steps():
        warnings.warn(
          f"{CHECKPOINTS_DIR}/{step} is missing; discarding state/{step} and training epoch {step} "
          "again from the previous epoch's state to rewrite it."
        )
        self._state.delete(step)
        continue
      try:
        state = self._state.restore(step, args=ocp.args.StandardRestore(abstract_state))
      except Exception as error:  # orbax/tensorstore raise many types for damaged files
        warnings.warn(
          f"Training state of epoch {step} in {os.path.join(self.workdir, STATE_DIR)} is "
          f"unreadable ({type(error).__name__}: {str(error)[:200]}); falling back to the "
          "previous complete epoch."
        )
        self._state.delete(step)
        continue
      self._drop_after(step)
      return step, state
    self._drop_after(-1)
    return None

  def _drop_after(self, epoch: int) -> None:
    for step in self._checkpoints.all_steps():
      if step > epoch:
        self._checkpoints.delete(step)
    for step in self._state.all_steps():
      if step > epoch:
        self._state.delete(step)

  def epoch_metrics(self, epoch: int) -> dict:
    """The per-cohort metrics stored in the checkpoint of `epoch`."""
    if epoch not in self._checkpoints.all_steps():
      raise errors.DamagedZoo(
        f"{os.path.join(self.workdir, CHECKPOINTS_DIR, str(epoch))} is missing while later epochs are "
        "committed: the weights of a middle epoch cannot be rebuilt without training the zoo again. Move "
        "this workdir away and run the command again (or restore that folder)."
      )
    return {int(c): v for c, v in restore_metrics(self._checkpoints, epoch).items()}

  def steps(self) -> list[int]:
    """The committed weight steps (epochs)."""
    return sorted(self._checkpoints.all_steps())

  def save_weights(
    self,
    epoch: int,
    params: dict[int, Any],
    metrics: dict[int, dict],
    model_state: dict[int, Any] | None = None,
  ) -> None:
    """Commits the weights and metrics of every cohort at `epoch` (a weights-only step).

    model_state: per cohort, the model's mutable collections ({"batch_stats": [P, ...]}) or None,
      stored beside "params" (params-only zoos are written exactly as before).
    """
    tree = {
      str(c): {"params": params[c], "metrics": metrics[c], **((model_state or {}).get(c) or {})}
      for c in params
    }
    chunked = jax.tree.map(
      lambda _: ocp.SaveArgs(chunk_byte_size=CHUNK_BYTES, shard_axes=(0,)), tree
    )
    self._checkpoints.save(epoch, args=ocp.args.StandardSave(tree, save_args=chunked))
    self._checkpoints.wait_until_finished()

  def save(
    self,
    epoch: int,
    params: dict[int, Any],
    metrics: dict[int, dict],
    state: Any,
    model_state: dict[int, Any] | None = None,
  ) -> None:
    """Commits epoch `epoch`'s weights and metrics of every cohort, then starts saving its training state.

    The state is written in the background while the next epoch trains (it matters only for
    resuming, and a state step without its weights step is discarded on restore); the next
    save, or close, waits for it. Returns once the weights step is committed.
    """
    self._state.wait_until_finished()  # the previous epoch's state
    self.save_weights(epoch, params, metrics, model_state)
    self._state.save(epoch, args=ocp.args.StandardSave(state))

  def close(self) -> None:
    self._checkpoints.close()
    if self._state is not None:
      self._state.close()
