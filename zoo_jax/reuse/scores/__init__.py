"""Transferability scores, one file each: how well a model's penultimate features suit a target task.

A score is a module of this folder, named for its file (`names()`); it exposes

  score(features [N, F], labels [N]) -> float

computed from a model's penultimate features on N target images (zoo_jax.reuse.penultimate) and
their class labels, higher = predicted to transfer better, with no training of the model. Helpers
of one score live in its file (logme.py's evidence and fixed point); the input check shared by
all is `as_inputs` here. Float64 numpy throughout: N x F (<= a few thousand x 100) is tiny.

Every score of this folder is computed for every model by zoo_jax.reuse.ranking.task_scores,
becomes a column of zoo_jax.select's ranking and an input of its learned ranker. Adding a score
is one new file here exposing `score`, plus naming it in configs/select.py's `methods`.
"""

from typing import Callable

import numpy as np

from zoo_jax import registry


def names() -> tuple[str, ...]:
  """Every score: the modules of this folder, sorted."""
  return registry.names(__name__)


def get(name: str, field: str = "score") -> Callable[[np.ndarray, np.ndarray], float]:
  """The `score` function of score `name`; an unknown name is a ValueError naming `field` and the known ones."""
  return registry.load(__name__, name, field).score


def as_inputs(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(features float64 [N, F], labels [N]); a ValueError for any other shapes."""
  f, y = np.asarray(features, np.float64), np.asarray(labels)
  if f.ndim != 2 or y.shape != (f.shape[0],):
    raise ValueError(f"features must be [N, D] and labels [N], got {f.shape} and {y.shape}.")
  return f, y
