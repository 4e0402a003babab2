"""Transferability estimates from a model's penultimate features on a target, and how good a ranking is.

Scores (higher = predicted to transfer better), each from features f [N, D] and labels y [N]:
  logme   LogME (You et al., 2021): the mean over classes of the per-sample log evidence of a
          Bayesian linear regression from f to the one-hot label, with the prior precision alpha
          and noise precision beta set by the evidence-maximisation fixed point (MacKay).
  hscore  H-score (Bao et al., 2019): tr(cov(f)^-1 cov(E[f | y])), with a pseudo-inverse.
  ncc     inter-class discriminability (as in ZooD's feature-level criteria): the accuracy of a
          nearest-class-mean classifier fitted on one half of the target images, scored on the other.
Float64 numpy throughout: the evidence needs it, and N x D (<= a few thousand x 100) is tiny.
"""

from typing import Callable

import numpy as np
import scipy.stats

_EPS = 1e-5  # guards m'm and the residual against zero, as in the authors' code


def _as_inputs(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  f, y = np.asarray(features, np.float64), np.asarray(labels)
  if f.ndim != 2 or y.shape != (f.shape[0],):
    raise ValueError(f"features must be [N, D] and labels [N], got {f.shape} and {y.shape}.")
  return f, y


def logme_evidence(f: np.ndarray, t: np.ndarray, alpha: float, beta: float) -> float:
  """Closed-form log evidence log p(t | f, alpha, beta) of Bayesian linear regression t ~ f w,
  w ~ N(0, alpha^-1 I), noise N(0, beta^-1): the quantity the fixed point maximises."""
  n, d = f.shape
  a = alpha * np.eye(d) + beta * f.T @ f
  m = beta * np.linalg.solve(a, f.T @ t)
  residual = np.sum((t - f @ m) ** 2)
  return float(
    d / 2 * np.log(alpha)
    + n / 2 * np.log(beta)
    - 0.5 * np.linalg.slogdet(a)[1]
    - beta / 2 * residual
    - alpha / 2 * m @ m
    - n / 2 * np.log(2 * np.pi)
  )


def logme_fixed_point(
  f: np.ndarray, t: np.ndarray, max_iter: int = 100, tol: float = 1e-6
) -> tuple[float, float, float]:
  """(evidence / N, alpha, beta) for one target column t [N] by MacKay's fixed-point updates
  (You et al. 2021, Algorithm 1), in the eigenbasis of f'f so each step is O(D)."""
  n, d = f.shape
  s, v = np.linalg.eigh(f.T @ f)
  s = np.clip(s, 0.0, None)
  proj = v.T @ (f.T @ t)  # f't in the eigenbasis
  alpha, beta = 1.0, 1.0
  for _ in range(max_iter):
    gamma = np.sum(beta * s / (alpha + beta * s))
    m_eig = beta * proj / (alpha + beta * s)
    m = v @ m_eig
    alpha_new = gamma / (m @ m + _EPS)
    beta_new = (n - gamma) / (np.sum((t - f @ m) ** 2) + _EPS)
    done = abs(alpha_new / beta_new - alpha / beta) <= tol * alpha / beta
    alpha, beta = alpha_new, beta_new
    if done:
      break
  m = v @ (beta * proj / (alpha + beta * s))
  evidence = (
    d / 2 * np.log(alpha)
    + n / 2 * np.log(beta)
    - 0.5 * np.sum(np.log(alpha + beta * s))
    - beta / 2 * np.sum((t - f @ m) ** 2)
    - alpha / 2 * m @ m
    - n / 2 * np.log(2 * np.pi)
  )
  return float(evidence / n), float(alpha), float(beta)


def logme(features: np.ndarray, labels: np.ndarray) -> float:
  """LogME of features [N, D] for class labels [N]: mean over classes of the one-vs-rest evidence / N."""
  f, y = _as_inputs(features, labels)
  return float(
    np.mean([logme_fixed_point(f, (y == c).astype(np.float64))[0] for c in np.unique(y)])
  )


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
  """H-score: tr(cov(f)^+ cov(E[f | y])), features centred."""
  f, y = _as_inputs(features, labels)
  f = f - f.mean(0)
  class_means = np.zeros_like(f)
  for c in np.unique(y):
    class_means[y == c] = f[y == c].mean(0)
  cov_f = f.T @ f / len(f)
  cov_g = class_means.T @ class_means / len(f)
  return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-10) @ cov_g))


def ncc(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
  """Nearest-class-mean accuracy: class means and a per-feature scale from a seeded half, scored on the other."""
  f, y = _as_inputs(features, labels)
  order = np.random.default_rng(seed).permutation(len(y))
  fit, held = order[: len(y) // 2], order[len(y) // 2 :]
  mu, sd = f[fit].mean(0), f[fit].std(0) + 1e-8
  z = (f - mu) / sd
  classes = np.unique(y[fit])
  means = np.stack([z[fit][y[fit] == c].mean(0) for c in classes])
  dist = ((z[held][:, None, :] - means[None]) ** 2).sum(-1)
  return float(np.mean(classes[np.argmin(dist, 1)] == y[held]))


SCORES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
  "logme": logme,
  "hscore": hscore,
  "ncc": ncc,
}


def ranking_metrics(
  scores: np.ndarray, truth: np.ndarray, top: tuple[int, ...] = (1, 5)
) -> dict[str, float]:
  """How well `scores` rank models whose true value (e.g. fine-tuned accuracy) is `truth`.

  kendall_tau and weighted_tau (scipy; weighted tau stresses the top of the ranking), and
  top-k regret: the best true value minus the best true value among the k highest-scored models.
  Non-finite scores rank last.
  """
  scores, truth = np.asarray(scores, np.float64), np.asarray(truth, np.float64)
  if scores.shape != truth.shape or scores.ndim != 1:
    raise ValueError(
      f"scores and truth must be [M] vectors of one length, got {scores.shape}, {truth.shape}."
    )
  scores = np.where(np.isfinite(scores), scores, -np.inf)
  finite = np.where(
    np.isfinite(scores), scores, np.min(scores[np.isfinite(scores)], initial=0.0) - 1.0
  )
  out = {
    "kendall_tau": float(scipy.stats.kendalltau(finite, truth).statistic),
    "weighted_tau": float(scipy.stats.weightedtau(finite, truth).statistic),
  }
  order = np.argsort(-finite, kind="stable")
  for k in top:
    out[f"top{k}_regret"] = float(truth.max() - truth[order[:k]].max())
  return out
