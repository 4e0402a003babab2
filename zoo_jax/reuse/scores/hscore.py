"""H-score (Bao et al., 2019): tr(cov(f)^-1 cov(E[f | y])), with a pseudo-inverse."""

import numpy as np

from zoo_jax.reuse import scores


def score(features: np.ndarray, labels: np.ndarray) -> float:
  """H-score: tr(cov(f)^+ cov(E[f | y])), features centred."""
  f, y = scores.as_inputs(features, labels)
  f = f - f.mean(0)
  class_means = np.zeros_like(f)
  for c in np.unique(y):
    class_means[y == c] = f[y == c].mean(0)
  cov_f = f.T @ f / len(f)
  cov_g = class_means.T @ class_means / len(f)
  return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-10) @ cov_g))
