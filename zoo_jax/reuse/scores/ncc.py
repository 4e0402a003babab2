"""Inter-class discriminability (as in ZooD's feature-level criteria): the accuracy of a
nearest-class-mean classifier fitted on one half of the target images, scored on the other."""

import numpy as np

from zoo_jax.reuse import scores


def score(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
  """Nearest-class-mean accuracy: class means and a per-feature scale from a seeded half, scored on the other."""
  f, y = scores.as_inputs(features, labels)
  order = np.random.default_rng(seed).permutation(len(y))
  fit, held = order[: len(y) // 2], order[len(y) // 2 :]
  mu, sd = f[fit].mean(0), f[fit].std(0) + 1e-8
  z = (f - mu) / sd
  classes = np.unique(y[fit])
  means = np.stack([z[fit][y[fit] == c].mean(0) for c in classes])
  dist = ((z[held][:, None, :] - means[None]) ** 2).sum(-1)
  return float(np.mean(classes[np.argmin(dist, 1)] == y[held]))
