"""Sampler "neighbourhood_umap": the reference's neighbourhood sampler, a 3-D UMAP map of the top
models (neighbourhood.umap_neighbourhood_sample). Needs umap-learn; slow to start."""

import jax

from zoo_jax.samplers import _top, neighbourhood

DEFAULTS = {
  "top_fraction": _top.DEFAULT_TOP_FRACTION,
  "dims": neighbourhood.DEFAULT_DIMS,
  "umap_neighbors": neighbourhood.UMAP_NEIGHBORS,
  "umap_min_dist": neighbourhood.UMAP_MIN_DIST,
}


def draw(key: jax.Array, embeddings, scores, num_samples: int, config) -> jax.Array:
  """[S, D] draws in the UMAP map's box of the top rows of embeddings [N, D] by scores [N]."""
  return neighbourhood.umap_neighbourhood_sample(
    key,
    embeddings,
    scores,
    num_samples,
    top_fraction=config["top_fraction"],
    dims=config["dims"],
    n_neighbors=config["umap_neighbors"],
    min_dist=config["umap_min_dist"],
  )
