"""LogME (You et al., 2021): the mean over classes of the per-sample log evidence of a Bayesian
linear regression from the features to the one-vs-rest label, with the prior precision alpha and
the noise precision beta set by the evidence-maximisation fixed point (MacKay)."""

import numpy as np

from zoo_jax.reuse import scores

_EPS = 1e-5  # guards m'm and the residual against zero, as in the authors' code


def evidence(f: np.ndarray, t: np.ndarray, alpha: float, beta: float) -> float:
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


def fixed_point(
  f: np.ndarray, t: np.ndarray, max_iter: int = 100, tol: float = 1e-6
) -> tuple[float, float, float]:
  """(evidence / N, alpha, beta) for one target column t [N] by MacKay's fixed-point updates
  (You et al. 2021, Algorithm 1), in the eigenbasis of f'f so each step is O(D): the residual
  |t - f m|^2 is t't - 2 m'f't + m'f'f m there. alpha and beta stay >= 1e-10, so features that are
  all zero (a dead model) get a finite, low evidence instead of 0 / 0."""
  n, d = f.shape
  s, v = np.linalg.eigh(f.T @ f)
  s = np.clip(s, 0.0, None)
  proj = v.T @ (f.T @ t)  # f't in the eigenbasis
  tt = float(t @ t)
  alpha, beta = 1.0, 1.0

  def fit(alpha, beta):
    m = beta * proj / (alpha + beta * s)  # the posterior mean in the eigenbasis
    return m, max(tt - 2 * m @ proj + np.sum(s * m**2), 0.0)

  for _ in range(max_iter):
    gamma = np.sum(beta * s / (alpha + beta * s))
    m, residual = fit(alpha, beta)
    alpha_new = max(gamma / (m @ m + _EPS), 1e-10)
    beta_new = max((n - gamma) / (residual + _EPS), 1e-10)
    done = abs(alpha_new / beta_new - alpha / beta) <= tol * alpha / beta
    alpha, beta = alpha_new, beta_new
    if done:
      break
  m, residual = fit(alpha, beta)
  value = (
    d / 2 * np.log(alpha)
    + n / 2 * np.log(beta)
    - 0.5 * np.sum(np.log(alpha + beta * s))
    - beta / 2 * residual
    - alpha / 2 * m @ m
    - n / 2 * np.log(2 * np.pi)
  )
  return float(value / n), float(alpha), float(beta)


def score(features: np.ndarray, labels: np.ndarray) -> float:
  """LogME of features [N, D] for class labels [N]: mean over classes of the one-vs-rest evidence / N."""
  f, y = scores.as_inputs(features, labels)
  return float(np.mean([fixed_point(f, (y == c).astype(np.float64))[0] for c in np.unique(y)]))
