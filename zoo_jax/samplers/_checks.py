"""Argument checks shared by the samplers: each returns the checked value or raises a ValueError
naming the argument."""

import math

import numpy as np


def check_embeddings(embeddings, name: str = "embeddings") -> np.ndarray:
  """A finite, non-empty [N, D] numpy matrix."""
  embeddings = np.asarray(embeddings)
  if embeddings.ndim != 2 or embeddings.shape[0] < 1 or embeddings.shape[1] < 1:
    raise ValueError(f"{name} must be a non-empty matrix [N, D], got shape {embeddings.shape}.")
  if not np.all(np.isfinite(embeddings)):
    raise ValueError(
      f"{name} has {int(np.sum(~np.isfinite(embeddings)))} non-finite entries; "
      "drop the diverged models first."
    )
  return embeddings


def check_scores(scores, num_models: int) -> np.ndarray:
  """Scores [N], one per embedding row."""
  scores = np.asarray(scores)
  if scores.ndim != 1 or scores.shape[0] != num_models:
    raise ValueError(
      f"scores must have shape [N] = [{num_models}] (one per embedding row), "
      f"got shape {scores.shape}."
    )
  return scores


def check_num_samples(num_samples) -> int:
  """An integer S >= 1."""
  if (
    isinstance(num_samples, bool)
    or not isinstance(num_samples, (int, np.integer))
    or num_samples < 1
  ):
    raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}.")
  return int(num_samples)


def check_fraction(fraction, name: str) -> float:
  """A number in (0, 1]."""
  if not isinstance(fraction, (int, float, np.number)) or not 0.0 < fraction <= 1.0:
    raise ValueError(f"{name} must be a number in (0, 1], got {fraction!r}.")
  return float(fraction)


def check_bandwidth(bandwidth, name: str = "bandwidth") -> float:
  """A finite number >= 0."""
  if not isinstance(bandwidth, (int, float, np.number)) or not 0.0 <= bandwidth < math.inf:
    raise ValueError(f"{name} must be a finite number >= 0, got {bandwidth!r}.")
  return float(bandwidth)
