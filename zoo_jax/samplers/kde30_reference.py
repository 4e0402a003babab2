"""Sampler "kde30_reference": the reference code's KDE30 (kde.kde_reference_sample: a whole top
embedding plus a shared shift) over the top `top_fraction` models."""

import jax

from zoo_jax.samplers import _top, kde

DEFAULTS = {"bandwidth": kde.DEFAULT_BANDWIDTH, "top_fraction": _top.DEFAULT_TOP_FRACTION}


def draw(key: jax.Array, embeddings, scores, num_samples: int, config) -> jax.Array:
  """[S, D] reference-KDE samples of the top rows of embeddings [N, D] by scores [N]."""
  top = _top.select_top(embeddings, scores, config["top_fraction"])
  return kde.kde_reference_sample(key, top, num_samples, config["bandwidth"])
