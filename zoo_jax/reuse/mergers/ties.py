"""TIES-merging (Yadav et al., 2023): ancestor + lambda * the TIES-merged task vectors: each trimmed to
its top `config.ties.density` magnitudes, each weight's sign elected, the agreeing entries averaged;
lambda of `config.scales` picked by validation accuracy; named ties_lambda_<lambda>."""

import numpy as np

from zoo_jax.reuse.mergers import Context, Merged, _task_vectors

NEEDS_ANCESTOR = True


def merge_vectors(task_vectors: np.ndarray, density: float) -> np.ndarray:
  """TIES-merging of flat task vectors [M, n] -> [n]: trim each to its top `density` fraction of
  magnitudes, elect the sign of each weight by its summed trimmed mass, average the agreeing entries."""
  m, n = task_vectors.shape
  keep = max(1, int(round(density * n)))
  threshold = -np.sort(-np.abs(task_vectors), axis=1)[:, keep - 1 : keep]
  trimmed = np.where(np.abs(task_vectors) >= threshold, task_vectors, 0.0)
  sign = np.sign(trimmed.sum(0))
  agree = (np.sign(trimmed) == sign) & (trimmed != 0)
  return np.where(agree, trimmed, 0.0).sum(0) / np.maximum(agree.sum(0), 1)


def merge(context: Context) -> list[Merged]:
  origin, tau = _task_vectors.task_vectors(context)
  return [
    _task_vectors.best_scaled(
      context, "ties", origin, merge_vectors(tau, context.config.ties.density)
    )
  ]
