"""Transferability scores (zoo_jax.reuse.scores) against independent computations on planted data; the registry."""

import os
import re

import numpy as np
import pytest
import scipy.stats

from zoo_jax.reuse import scores
from zoo_jax.reuse.scores import hscore, logme


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
  per_sample, alpha, beta = logme.fixed_point(f, t)
  n = len(t)
  # The same evidence computed directly (dense solve) at the converged alpha, beta ...
  assert per_sample * n == pytest.approx(logme.evidence(f, t, alpha, beta), rel=1e-8)
  # ... and independently, as the Gaussian marginal likelihood t ~ N(0, I/beta + f f'/alpha).
  cov = np.eye(n) / beta + f @ f.T / alpha
  assert per_sample * n == pytest.approx(
    scipy.stats.multivariate_normal(np.zeros(n), cov).logpdf(t), rel=1e-6
  )
  # The fixed point maximises the evidence over (alpha, beta).
  best = logme.evidence(f, t, alpha, beta)
  for da, db in ((1.2, 1), (1 / 1.2, 1), (1, 1.2), (1, 1 / 1.2)):
    assert logme.evidence(f, t, alpha * da, beta * db) < best


@pytest.mark.parametrize("name", scores.names())
def test_separable_features_score_higher_than_noise(name):
  separable, noise, y = _planted(seed=1)
  fn = scores.get(name)
  assert fn(separable, y) > fn(noise, y)


def test_hscore_matches_its_definition():
  f, _, y = _planted(seed=2)
  fc = f - f.mean(0)
  g = np.stack([fc[y == c].mean(0) for c in y])  # E[f | y] per sample
  expected = np.trace(np.linalg.inv(np.cov(fc.T, bias=True)) @ np.cov(g.T, bias=True))
  assert hscore.score(f, y) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", scores.names())
def test_bad_shapes_are_refused(name):
  with pytest.raises(ValueError, match="features must be"):
    scores.get(name)(np.zeros((5, 2)), np.zeros(4))


def test_every_score_is_a_module_file_exposing_score():
  folder = os.path.dirname(scores.__file__)
  files = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))
  assert scores.names() == tuple(files)
  assert {"logme", "hscore", "ncc"} <= set(files)
  for name in scores.names():
    assert callable(scores.get(name))


def test_unknown_score_names_the_field_and_the_allowed_values():
  with pytest.raises(
    ValueError,
    match="score 'oracle' is unknown; allowed values: " + re.escape(str(list(scores.names()))),
  ):
    scores.get("oracle")
