"""Transferability scores and ranking metrics against independent computations on planted data."""

import numpy as np
import pytest
import scipy.stats

from zoo_jax import transfer


def _planted(seed=0, n=300, d=8, classes=4):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, n)
  centres = rng.normal(size=(classes, d)) * 3.0
  separable = centres[labels] + rng.normal(size=(n, d))
  noise = rng.normal(size=(n, d))
  return separable, noise, labels


def test_logme_fixed_point_is_the_closed_form_evidence_and_the_marginal_likelihood():
  f, _, y = _planted()
  t = (y == 1).astype(np.float64)
  per_sample, alpha, beta = transfer.logme_fixed_point(f, t)
  n = len(t)
  # The same evidence computed directly (dense solve) at the converged alpha, beta ...
  assert per_sample * n == pytest.approx(transfer.logme_evidence(f, t, alpha, beta), rel=1e-8)
  # ... and independently, as the Gaussian marginal likelihood t ~ N(0, I/beta + f f'/alpha).
  cov = np.eye(n) / beta + f @ f.T / alpha
  assert per_sample * n == pytest.approx(
    scipy.stats.multivariate_normal(np.zeros(n), cov).logpdf(t), rel=1e-6
  )
  # The fixed point maximises the evidence over (alpha, beta).
  best = transfer.logme_evidence(f, t, alpha, beta)
  for da, db in ((1.2, 1), (1 / 1.2, 1), (1, 1.2), (1, 1 / 1.2)):
    assert transfer.logme_evidence(f, t, alpha * da, beta * db) < best


@pytest.mark.parametrize("score", sorted(transfer.SCORES))
def test_separable_features_score_higher_than_noise(score):
  separable, noise, y = _planted(seed=1)
  fn = transfer.SCORES[score]
  assert fn(separable, y) > fn(noise, y)


def test_hscore_matches_its_definition():
  f, _, y = _planted(seed=2)
  fc = f - f.mean(0)
  g = np.stack([fc[y == c].mean(0) for c in y])  # E[f | y] per sample
  expected = np.trace(np.linalg.inv(np.cov(fc.T, bias=True)) @ np.cov(g.T, bias=True))
  assert transfer.hscore(f, y) == pytest.approx(expected, rel=1e-6)


def test_ranking_metrics_match_scipy_and_hand_regret():
  rng = np.random.default_rng(3)
  truth = rng.uniform(size=40)
  scores = truth + rng.normal(scale=0.2, size=40)
  m = transfer.ranking_metrics(scores, truth)
  assert m["kendall_tau"] == pytest.approx(scipy.stats.kendalltau(scores, truth).statistic)
  assert m["weighted_tau"] == pytest.approx(scipy.stats.weightedtau(scores, truth).statistic)
  order = np.argsort(-scores)
  assert m["top1_regret"] == pytest.approx(truth.max() - truth[order[0]])
  assert m["top5_regret"] == pytest.approx(truth.max() - truth[order[:5]].max())
  perfect = transfer.ranking_metrics(truth, truth)
  assert perfect["kendall_tau"] == pytest.approx(1.0) and perfect["top1_regret"] == 0.0


def test_bad_shapes_are_refused():
  with pytest.raises(ValueError, match="features must be"):
    transfer.logme(np.zeros((5, 2)), np.zeros(4))
