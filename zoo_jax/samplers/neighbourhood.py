"""Sampler "neighbourhood": uniform draws in a low-dimensional map of the top models, mapped back.

Holds both maps: a PCA map (this sampler; fit_neighbourhood, neighbourhood_sample) and the
reference's UMAP map (umap_neighbourhood_sample, the sampler "neighbourhood_umap").
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax.samplers import _checks, _top, uniform

# Generative hyper-representations (2022): the neighbourhood map is 3-D; UMAP with 15 neighbours,
# min_dist 0.01.
DEFAULT_DIMS = 3
UMAP_NEIGHBORS, UMAP_MIN_DIST = 15, 0.01

DEFAULTS = {"top_fraction": _top.DEFAULT_TOP_FRACTION, "dims": DEFAULT_DIMS}


class Neighbourhood(NamedTuple):
  """A linear map to a low-dimensional space and a box of good models in it.

  forward(x) = (x - mean) @ components.T; inverse(z) = z @ components + mean (PCA).
  """

  mean: jax.Array  # [D] centre of the fitted embeddings
  components: jax.Array  # [dims, D] orthonormal principal axes
  low: jax.Array  # [dims] lower corner of the top models' box in the map
  high: jax.Array  # [dims] upper corner


def neighbourhood_forward(fitted: Neighbourhood, embeddings: jax.Array) -> jax.Array:
  """Embeddings [..., D] to map coordinates [..., dims]."""
  return (embeddings - fitted.mean) @ fitted.components.T


def neighbourhood_inverse(fitted: Neighbourhood, coords: jax.Array) -> jax.Array:
  """Map coordinates [..., dims] back to embeddings [..., D] (in the PCA subspace)."""
  return coords @ fitted.components + fitted.mean


def fit_neighbourhood(
  embeddings, scores, *, dims: int = DEFAULT_DIMS, top_fraction: float = _top.DEFAULT_TOP_FRACTION
) -> Neighbourhood:
  """Fits the map on all embeddings and the box around the top models in it.

  The 2022 paper used a 3-D UMAP (n_neighbors 15, min_dist 0.01) and its approximate
  inverse (see `umap_neighbourhood_sample`); this one uses PCA (scikit-learn) to `dims`
  dimensions, whose inverse is exact up to the discarded directions: samples lie in the
  affine subspace through the zoo's mean spanned by its top `dims` principal axes.

  Args:
    embeddings: [N, D]. scores: [N], higher is better.
    dims: map dimension, 1 <= dims <= min(N, D). top_fraction: in (0, 1].
  Returns:
    A `Neighbourhood` of float32 arrays, for `neighbourhood_sample`.
  """
  from sklearn.decomposition import PCA  # imported here: only this sampler needs it

  embeddings = _checks.check_embeddings(embeddings)
  top = _top.select_top(embeddings, scores, _checks.check_fraction(top_fraction, "top_fraction"))
  limit = min(embeddings.shape)
  if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or not 1 <= dims <= limit:
    raise ValueError(f"dims must be an integer in [1, min(N, D)] = [1, {limit}], got {dims!r}.")
  pca = PCA(n_components=int(dims), svd_solver="full").fit(embeddings.astype(np.float64))
  coords = pca.transform(top.astype(np.float64))
  as_f32 = lambda x: jnp.asarray(x, jnp.float32)
  return Neighbourhood(
    mean=as_f32(pca.mean_),
    components=as_f32(pca.components_),
    low=as_f32(coords.min(axis=0)),
    high=as_f32(coords.max(axis=0)),
  )


@functools.partial(jax.jit, static_argnames="num_samples")
def _neighbourhood(key: jax.Array, fitted: Neighbourhood, num_samples: int) -> jax.Array:
  coords = uniform.in_box(key, fitted.low, fitted.high, num_samples)
  return neighbourhood_inverse(fitted, coords)


def neighbourhood_sample(key: jax.Array, fitted: Neighbourhood, num_samples: int) -> jax.Array:
  """Uniform draws in the top models' box of the map, mapped back: [S, D] float32."""
  return _neighbourhood(key, fitted, _checks.check_num_samples(num_samples))


def umap_neighbourhood_sample(
  key: jax.Array,
  embeddings,
  scores,
  num_samples: int,
  *,
  top_fraction: float = _top.DEFAULT_TOP_FRACTION,
  dims: int = DEFAULT_DIMS,
  n_neighbors: int = UMAP_NEIGHBORS,
  min_dist: float = UMAP_MIN_DIST,
) -> jax.Array:
  """The reference neighbourhood sampler: UMAP of the top models, uniform in its box, inverted.

  UMAP (umap-learn; n_neighbors 15, min_dist 0.01, 3-D as published) is fitted on the top
  `top_fraction` embeddings [K, D] of embeddings [N, D] by scores [N]; draws are uniform in the
  bounding box of their map and go back through UMAP's inverse transform (an interpolation
  between nearby top embeddings). The key seeds both UMAP and the draws.

  Returns:
    [S, D] float32.
  """
  import umap  # imported here: only this sampler needs it, and it is slow to import

  top = _top.select_top(embeddings, scores, _checks.check_fraction(top_fraction, "top_fraction"))
  top = top.astype(np.float64)
  num_samples = _checks.check_num_samples(num_samples)
  if top.shape[0] < dims + 2:
    raise ValueError(
      f"The UMAP neighbourhood needs at least {dims + 2} top embeddings, got {top.shape[0]}; "
      "raise top_fraction or give more models."
    )
  seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
  fitted = umap.UMAP(
    n_neighbors=min(int(n_neighbors), top.shape[0] - 1),
    min_dist=float(min_dist),
    n_components=int(dims),
    random_state=seed,
    init="random",
  ).fit(top)
  coords = fitted.embedding_
  draws = np.random.default_rng(seed).uniform(
    coords.min(axis=0), coords.max(axis=0), (num_samples, int(dims))
  )
  return jnp.asarray(fitted.inverse_transform(draws), jnp.float32)


def draw(key: jax.Array, embeddings, scores, num_samples: int, config) -> jax.Array:
  """[S, D] draws in the PCA map's box of the top rows of embeddings [N, D] by scores [N]."""
  fitted = fit_neighbourhood(
    embeddings, scores, dims=config["dims"], top_fraction=config["top_fraction"]
  )
  return neighbourhood_sample(key, fitted, num_samples)
