"""The top models by score: what S_KDE30 and the neighbourhood samplers fit on."""

import math

import numpy as np

from zoo_jax.samplers import _checks

# Generative hyper-representations (2022): S_KDE30 and the neighbourhood use the top 30%.
DEFAULT_TOP_FRACTION = 0.3


def select_top(embeddings, scores, fraction: float = DEFAULT_TOP_FRACTION) -> np.ndarray:
  """The embeddings of the best ceil(fraction * N) models by score (e.g. test accuracy).

  Args:
    embeddings: [N, D]. scores: [N], higher is better; NaN scores rank last.
    fraction: in (0, 1]; 0.3 gives the S_KDE30 selection.
  Returns:
    [K, D] numpy rows, best first (ties keep their original order).
  """
  embeddings = _checks.check_embeddings(embeddings)
  scores = _checks.check_scores(scores, embeddings.shape[0])
  fraction = _checks.check_fraction(fraction, "fraction")
  count = max(1, math.ceil(fraction * embeddings.shape[0] - 1e-9))
  # A stable sort of -scores puts the best first and NaN (diverged models) last.
  order = np.argsort(-scores.astype(np.float64), kind="stable")
  return embeddings[order[:count]]
