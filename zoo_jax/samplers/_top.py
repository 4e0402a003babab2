"""The top models by score: what S_KDE30 and the neighbourhood samplers fit on."""

import math

import numpy as np

from zoo_jax.samplers import _checks

# Generative hyper-representations (2022): S_KDE30 and the neighbourhood use the top 30%.
DEFAULT_TOP_FRACTION = 0.3


def top_indices(scores, fraction: float = DEFAULT_TOP_FRACTION) -> np.ndarray:
  """The indices of the best ceil(fraction * N) of N scores (e.g. test accuracy), best first.

  Args:
    scores: [N], higher is better; NaN scores rank last.
    fraction: in (0, 1]; 0.3 gives the S_KDE30 selection.
  Returns:
    [K] int indices (ties keep their original order).
  """
  scores = _checks.check_scores(scores, np.size(scores))
  fraction = _checks.check_fraction(fraction, "fraction")
  count = max(1, math.ceil(fraction * len(scores) - 1e-9))
  # A stable sort of -scores puts the best first and NaN (diverged models) last.
  return np.argsort(-scores.astype(np.float64), kind="stable")[:count]


def select_top(embeddings, scores, fraction: float = DEFAULT_TOP_FRACTION) -> np.ndarray:
  """The embeddings of the best ceil(fraction * N) models by score (`top_indices`).

  Args:
    embeddings: [N, D]. scores: [N], higher is better; NaN scores rank last.
    fraction: in (0, 1]; 0.3 gives the S_KDE30 selection.
  Returns:
    [K, D] numpy rows, best first (ties keep their original order).
  """
  embeddings = _checks.check_embeddings(embeddings)
  scores = _checks.check_scores(scores, embeddings.shape[0])
  return embeddings[top_indices(scores, fraction)]
