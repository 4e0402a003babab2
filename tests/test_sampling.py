"""Samplers over embeddings: determinism, marginals (KDE), boxes (neighbourhood, uniform), GAN fit."""

import importlib
import pathlib
import re
import types

import chex
import jax
import numpy as np
import pytest
from scipy import stats
from sklearn.decomposition import PCA

from zoo_jax import samplers
from zoo_jax.samplers import gan, kde, neighbourhood, uniform

N, D = 120, 6
# A GAN this short is only for determinism and shapes, not for quality.
_QUICK_GAN = {"gan_size": "small", "gan": {"steps": 5, "batch_size": 16}}


def _zoo(seed: int = 0, n: int = N, d: int = D):
  """Correlated Gaussian embeddings and scores that grow with the first dimension."""
  rng = np.random.default_rng(seed)
  mixing = rng.normal(size=(d, d)) / np.sqrt(d)
  embeddings = (rng.normal(size=(n, d)) @ mixing + rng.normal(size=d)).astype(np.float32)
  scores = embeddings[:, 0] + 0.1 * rng.normal(size=n)
  return embeddings, scores


@pytest.mark.parametrize("name", samplers.SAMPLERS)
def test_draw_is_deterministic_in_the_key(name):
  embeddings, scores = _zoo()
  sample = lambda seed: np.asarray(
    samplers.draw(name, jax.random.key(seed), embeddings, scores, 64, _QUICK_GAN)
  )
  first, again, other = sample(0), sample(0), sample(1)
  chex.assert_shape(first, (64, D))
  chex.assert_tree_all_finite(first)
  np.testing.assert_array_equal(first, again)
  assert not np.allclose(first, other)


def test_select_top_matches_a_sort():
  embeddings, scores = _zoo()
  top = samplers.select_top(embeddings, scores, 0.3)
  expected = embeddings[np.argsort(scores)[::-1][:36]]  # ceil(0.3 * 120) = 36, distinct scores
  np.testing.assert_array_equal(top, expected)
  assert samplers.select_top(embeddings, scores, 1.0).shape == (N, D)
  assert samplers.select_top(embeddings, scores, 1e-6).shape == (1, D)


def test_select_top_ranks_nan_scores_last():
  embeddings = np.arange(8, dtype=np.float32).reshape(4, 2)
  top = samplers.select_top(embeddings, np.array([np.nan, 0.2, 0.9, 0.5]), 0.75)
  np.testing.assert_array_equal(top, embeddings[[2, 3, 1]])


def test_kde_marginals_match_the_data():
  rng = np.random.default_rng(1)
  # Different shapes per dimension: normal, skewed, bimodal.
  data = np.stack(
    [
      rng.normal(size=400),
      rng.exponential(size=400),
      np.concatenate([rng.normal(-3, 0.5, 200), rng.normal(3, 0.5, 200)]),
    ],
    axis=1,
  )
  samples = np.asarray(kde.kde_sample(jax.random.key(0), data, 20_000))
  for d in range(data.shape[1]):
    assert stats.ks_2samp(samples[:, d], data[:, d]).pvalue > 0.01
    np.testing.assert_allclose(
      samples[:, d].mean(), data[:, d].mean(), atol=0.05 * data[:, d].std()
    )
    np.testing.assert_allclose(samples[:, d].std(), data[:, d].std(), rtol=0.03)
    # The test has teeth: a shift of 0.3 std is rejected.
    shifted = data[:, d] + 0.3 * data[:, d].std()
    assert stats.ks_2samp(samples[:, d], shifted).pvalue < 0.01


def test_kde_dimensions_are_independent():
  rng = np.random.default_rng(2)
  x = rng.normal(size=500)
  data = np.stack([x, x + 0.1 * rng.normal(size=500)], axis=1)  # correlation ~0.995
  samples = np.asarray(kde.kde_sample(jax.random.key(0), data, 20_000))
  assert abs(np.corrcoef(samples.T)[0, 1]) < 0.03


def test_kde_variance_grows_by_bandwidth_squared():
  embeddings, _ = _zoo()
  bandwidth = 0.7
  samples = np.asarray(kde.kde_sample(jax.random.key(3), embeddings, 200_000, bandwidth))
  expected = embeddings.var(axis=0) + bandwidth**2  # a mixture's variance: var_data + h^2
  np.testing.assert_allclose(samples.var(axis=0), expected, rtol=0.02)


def test_kde30_samples_stay_near_top_models():
  embeddings, scores = _zoo()
  bandwidth = kde.DEFAULT_BANDWIDTH
  samples = np.asarray(samplers.draw("kde30", jax.random.key(0), embeddings, scores, 2000))
  top = samplers.select_top(embeddings, scores, 0.3)
  # Per dimension, every sample is within 6 bandwidths of some top model's value.
  distance = np.abs(samples[:, None, :] - top[None, :, :]).min(axis=1)
  assert distance.max() < 6 * bandwidth
  # ... which KDE samples over all models are not: the check can fail.
  everyone = np.asarray(samplers.draw("kde", jax.random.key(0), embeddings, scores, 2000))
  assert np.abs(everyone[:, None, :] - top[None, :, :]).min(axis=1).max() > 6 * bandwidth


def test_neighbourhood_samples_lie_in_the_top_box():
  embeddings, scores = _zoo()
  fitted = neighbourhood.fit_neighbourhood(embeddings, scores, dims=3, top_fraction=0.3)
  samples = np.asarray(neighbourhood.neighbourhood_sample(jax.random.key(0), fitted, 5000))
  # The box, recomputed with an independently fitted scikit-learn PCA.
  pca = PCA(n_components=3, svd_solver="full").fit(embeddings.astype(np.float64))
  top = pca.transform(samplers.select_top(embeddings, scores, 0.3))
  low, high = top.min(axis=0), top.max(axis=0)
  coords = pca.transform(samples)
  margin = 1e-4 * (high - low)
  assert np.all(coords >= low - margin) and np.all(coords <= high + margin)
  # It is covered: each side is approached.
  np.testing.assert_allclose(coords.min(axis=0), low, atol=0.02 * np.max(high - low))
  np.testing.assert_allclose(coords.max(axis=0), high, atol=0.02 * np.max(high - low))


def test_neighbourhood_map_is_the_pca_projection():
  embeddings, scores = _zoo()
  fitted = neighbourhood.fit_neighbourhood(embeddings, scores, dims=3)
  # Reference: the top-3 right singular vectors of the centred data (numpy SVD).
  mean = embeddings.astype(np.float64).mean(axis=0)
  _, _, vt = np.linalg.svd(embeddings - mean, full_matrices=False)
  projector = vt[:3].T @ vt[:3]
  components = np.asarray(fitted.components, np.float64)
  np.testing.assert_allclose(components @ components.T, np.eye(3), atol=1e-5)
  np.testing.assert_allclose(components.T @ components, projector, atol=1e-5)
  top = samplers.select_top(embeddings, scores, 0.3)
  coords = neighbourhood.neighbourhood_forward(fitted, top)
  recovered = np.asarray(neighbourhood.neighbourhood_inverse(fitted, coords))
  np.testing.assert_allclose(recovered, mean + (top - mean) @ projector, atol=1e-4)
  # Samples lie in the affine PCA subspace: nothing outside it survives.
  samples = np.asarray(neighbourhood.neighbourhood_sample(jax.random.key(1), fitted, 100))
  residual = (samples - mean) - (samples - mean) @ projector
  np.testing.assert_allclose(residual, 0.0, atol=1e-4)


def test_uniform_samples_cover_the_box():
  embeddings, scores = _zoo()
  samples = np.asarray(uniform.uniform_sample(jax.random.key(0), embeddings, 20_000))
  low, high = embeddings.min(axis=0), embeddings.max(axis=0)
  assert np.all(samples >= low) and np.all(samples <= high)
  for d in range(D):  # uniform in each side: KS against U(low, high)
    assert stats.kstest(samples[:, d], stats.uniform(low[d], high[d] - low[d]).cdf).pvalue > 0.01


def test_gan_fits_a_gaussian_mixture():
  rng = np.random.default_rng(0)
  centres = np.array([[-2.0, 0.0], [2.0, 1.0]])
  data = centres[rng.integers(0, 2, 2000)] + 0.5 * rng.normal(size=(2000, 2))
  data = data * np.array([10.0, 0.1]) + np.array(
    [5.0, -3.0]
  )  # scales the standardisation must undo
  generator, info = gan.train_gan(jax.random.key(0), data, size="small")
  assert info["gen_loss"].shape == (gan.GAN_SIZES["small"].steps,)
  assert np.all(np.isfinite(info["disc_loss"]))
  samples = np.asarray(gan.gan_sample(jax.random.key(1), generator, 5000))
  standard = lambda x: (x - data.mean(axis=0)) / data.std(axis=0)
  np.testing.assert_allclose(standard(samples).mean(axis=0), 0.0, atol=0.15)
  np.testing.assert_allclose(np.cov(standard(samples).T), np.cov(standard(data).T), atol=0.2)
  # The untrained generator does not pass the same check.
  untrained, _ = gan.train_gan(jax.random.key(0), data, size="small", steps=0)
  before = standard(np.asarray(gan.gan_sample(jax.random.key(1), untrained, 5000)))
  assert np.abs(np.cov(before.T) - np.cov(standard(data).T)).max() > 0.2


@pytest.mark.parametrize(
  "call, field",
  [
    (lambda e, s: samplers.draw("vae", jax.random.key(0), e, s, 4), "vae"),
    (lambda e, s: samplers.draw("kde", jax.random.key(0), e, s[:-1], 4), "scores"),
    (lambda e, s: samplers.draw("kde", jax.random.key(0), e, s, 0), "num_samples"),
    (
      lambda e, s: samplers.draw("kde30", jax.random.key(0), e, s, 4, {"top_fraction": 0.0}),
      "config.top_fraction",
    ),
    (
      lambda e, s: samplers.draw("kde30", jax.random.key(0), e, s, 4, {"top_fraction": 1.5}),
      "config.top_fraction",
    ),
    (lambda e, s: samplers.draw("kde", jax.random.key(0), e, s, 4, {"bandwith": 0.1}), "bandwith"),
    (
      lambda e, s: samplers.draw("kde", jax.random.key(0), e, s, 4, {"bandwidth": -1.0}),
      "config.bandwidth",
    ),
    (lambda e, s: samplers.draw("kde", jax.random.key(0), e[0], s, 4), "embeddings"),
    (lambda e, s: samplers.select_top(e, s, 0.0), "fraction"),
    (lambda e, s: neighbourhood.fit_neighbourhood(e, s, dims=0), "dims"),
    (lambda e, s: neighbourhood.fit_neighbourhood(e, s, top_fraction=2.0), "top_fraction"),
    (lambda e, s: kde.kde_sample(jax.random.key(0), e, 2.5), "num_samples"),
    (lambda e, s: gan.train_gan(jax.random.key(0), e, size="huge"), "huge"),
    (lambda e, s: gan.train_gan(jax.random.key(0), e, hiden=3), "hiden"),
    (lambda e, s: gan.train_gan(jax.random.key(0), e, batch_size=0), "batch_size"),
  ],
)
def test_bad_inputs_name_the_field(call, field):
  embeddings, scores = _zoo()
  with pytest.raises(ValueError, match=field):
    call(embeddings, scores)


def test_unknown_sampler_lists_the_allowed_values():
  embeddings, scores = _zoo()
  allowed = re.escape(f"allowed values: {list(samplers.SAMPLERS)}")
  assert {
    "kde",
    "kde30",
    "kde30_reference",
    "neighbourhood",
    "neighbourhood_umap",
    "gan",
    "uniform",
    "uniform_reference",
    "pairs",
  } == set(samplers.SAMPLERS)
  with pytest.raises(ValueError, match=allowed):
    samplers.draw("nope", jax.random.key(0), embeddings, scores, 4)


def test_every_sampler_is_a_module_file_with_the_contract():
  folder = pathlib.Path(samplers.__file__).parent
  assert set(samplers.SAMPLERS) == {
    p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")
  }
  defaults = {}
  for name in samplers.SAMPLERS:
    module = importlib.import_module(f"zoo_jax.samplers.{name}")
    assert callable(module.draw) and isinstance(module.DEFAULTS, dict), name
    defaults.update(module.DEFAULTS)
  assert defaults == samplers.DRAW_DEFAULTS


def test_clashing_defaults_name_the_file():
  module = lambda defaults: types.SimpleNamespace(DEFAULTS=defaults)
  agreeing = {"a": module({"bandwidth": 0.1}), "b": module({"bandwidth": 0.1, "dims": 2})}
  assert samplers._merge_defaults(agreeing) == {"bandwidth": 0.1, "dims": 2}
  with pytest.raises(ValueError, match=r"zoo_jax/samplers/b\.py: config field 'bandwidth'"):
    samplers._merge_defaults({"a": module({"bandwidth": 0.1}), "b": module({"bandwidth": 0.2})})


def test_non_finite_embeddings_are_rejected():
  embeddings, scores = _zoo()
  embeddings[3, 2] = np.nan
  with pytest.raises(ValueError, match="embeddings has 1 non-finite"):
    kde.kde_sample(jax.random.key(0), embeddings, 4)


def test_draw_takes_a_config_dict_and_uses_it():
  import ml_collections

  embeddings, scores = _zoo()
  fields = {"bandwidth": 0.5, "top_fraction": 0.5}
  from_dict = samplers.draw("kde30", jax.random.key(0), embeddings, scores, 500, fields)
  from_config = samplers.draw(
    "kde30", jax.random.key(0), embeddings, scores, 500, ml_collections.ConfigDict(fields)
  )
  np.testing.assert_array_equal(from_dict, from_config)
  expected = kde.kde_sample(
    jax.random.key(0), samplers.select_top(embeddings, scores, 0.5), 500, 0.5
  )
  np.testing.assert_array_equal(from_dict, expected)


def test_kde30_reference_draws_are_whole_top_embeddings_plus_a_shared_shift():
  embeddings, scores = _zoo()
  top = samplers.select_top(embeddings, scores, 0.3)
  bandwidth = 0.01
  samples = np.asarray(
    samplers.draw(
      "kde30_reference", jax.random.key(0), embeddings, scores, 500, {"bandwidth": bandwidth}
    )
  )
  # Each sample is one top row moved by one scalar in every dimension (within 5 bandwidths).
  diffs = samples[:, None, :] - top[None, :, :]  # [S, K, D]
  spread = diffs.max(-1) - diffs.min(-1)  # 0 for the row it came from
  nearest = spread.argmin(1)
  np.testing.assert_allclose(spread[np.arange(500), nearest], 0.0, atol=1e-5)
  shift = diffs[np.arange(500), nearest, 0]
  assert np.abs(shift).max() < 5 * bandwidth
  assert stats.kstest(shift / bandwidth, "norm").pvalue > 0.01
  # Every top row is used, and nothing else.
  assert len(np.unique(nearest)) > 0.8 * len(top)


def test_uniform_reference_is_uniform_on_minus_one_one():
  embeddings, scores = _zoo()
  samples = np.asarray(
    samplers.draw("uniform_reference", jax.random.key(0), embeddings + 100.0, scores, 4000)
  )
  assert samples.shape == (4000, D) and samples.min() >= -1.0 and samples.max() < 1.0
  for d in range(D):
    assert stats.kstest(samples[:, d], "uniform", args=(-1, 2)).pvalue > 0.01


def test_umap_neighbourhood_samples_lie_among_the_top_models():
  embeddings, scores = _zoo()
  top = samplers.select_top(embeddings, scores, 0.3)
  samples = np.asarray(
    samplers.draw("neighbourhood_umap", jax.random.key(0), embeddings, scores, 32)
  )
  assert samples.shape == (32, D) and np.isfinite(samples).all()
  # The inverse transform interpolates between nearby top embeddings: inside their box, up to a
  # quarter of its width (umap-learn 0.5.12 steps up to 17% of it outside on this zoo).
  margin = 0.25 * (top.max(0) - top.min(0))
  assert (samples >= top.min(0) - margin).all() and (samples <= top.max(0) + margin).all()
  # Closer to the top models than the zoo's other models are, on average.
  dist = lambda a, b: np.linalg.norm(a[:, None] - b[None], axis=-1).min(1).mean()
  rest = embeddings[np.argsort(-scores)[len(top) :]]
  assert dist(samples, top) < dist(rest, top)
