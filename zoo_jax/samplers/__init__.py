"""Samplers: new latent embeddings [S, D] drawn from the embeddings [N, D] of a zoo's models.

The samplers of the generative hyper-representations (Schürholt et al., NeurIPS 2022): a
per-dimension Gaussian KDE over all models or over the top 30% by test accuracy (S_KDE30),
neighbourhood sampling in a low-dimensional map of the best models, and a small GAN; plus a
uniform draw in the zoo's bounding box as the baseline. Decoding the samples to weights is the
autoencoder's job (zoo_jax.sample); samplers only see arrays. Every sampler takes an explicit key
and is deterministic given it. Fitting (selecting top models, PCA, GAN training) happens at the
edge; sampling is a pure, jitted function.

Contract (zoo_jax.registry): a sampler is a public module of this package, named as a config
names it in `config.samplers`. It exposes
  draw(key, embeddings [N, D], scores [N], num_samples, config) -> [S, D]
    (config: DRAW_DEFAULTS completed by the caller's config.sampler; embeddings, scores and
    num_samples come checked by `draw` here), and
  DEFAULTS: a dict of the config fields it reads, with their defaults.
DRAW_DEFAULTS is the union of the modules' DEFAULTS; two modules giving one field different
defaults is an error. A new sampler is one new file here plus a config naming it.

Layout: a family's math lives once, in the module of the family's plain sampler; a variant is
a small module whose `draw` calls it:
  kde.py                 per-dimension KDE over all models (kde_sample, kde_reference_sample)
  kde30.py               kde_sample on the top `top_fraction` models (S_KDE30)
  kde30_reference.py     kde_reference_sample on them: the reference code's KDE30
  neighbourhood.py       PCA map of the top models (fit_neighbourhood, neighbourhood_sample) and
                         the reference's UMAP map (umap_neighbourhood_sample)
  neighbourhood_umap.py  umap_neighbourhood_sample
  uniform.py             the zoo's bounding box (uniform_sample; in_box, uniform_reference_sample)
  uniform_reference.py   uniform_reference_sample: U(-1, 1)^D
  gan.py                 a GAN trained on the embeddings (train_gan, gan_sample, GAN_SIZES)
  pairs.py               (1 - mix) a + mix b of two top models (pairs_sample): for aligned spaces
Private helpers start with `_`: _checks.py (argument checks), _top.py (select_top, top_indices).
"""

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import jax

from zoo_jax import registry
from zoo_jax.samplers import _checks
from zoo_jax.samplers._top import DEFAULT_TOP_FRACTION, select_top, top_indices

__all__ = ["DEFAULT_TOP_FRACTION", "DRAW_DEFAULTS", "SAMPLERS", "draw", "select_top", "top_indices"]

SAMPLERS = registry.names(__name__)


def _merge_defaults(modules: Mapping[str, ModuleType]) -> dict[str, Any]:
  """The union of the modules' DEFAULTS; a field two modules default differently is a ValueError."""
  merged, owner = {}, {}
  for name, module in modules.items():
    for field, default in module.DEFAULTS.items():
      if field in merged and merged[field] != default:
        raise ValueError(
          f"zoo_jax/samplers/{name}.py: config field {field!r} defaults to {default!r}, "
          f"but zoo_jax/samplers/{owner[field]}.py gives it {merged[field]!r}."
        )
      merged.setdefault(field, default)
      owner.setdefault(field, name)
  return merged


# Fields `draw` reads from its config, with their defaults.
DRAW_DEFAULTS = _merge_defaults(registry.modules(__name__))


def draw(
  name: str,
  key: jax.Array,
  embeddings,
  scores,
  num_samples: int,
  config: Mapping[str, Any] | None = None,
) -> jax.Array:
  """Draws [S, D] embeddings with the named sampler (one of SAMPLERS).

  Args:
    name: "kde" (per-dimension KDE, all models), "kde30" (the same on the top `top_fraction`),
      "kde30_reference" (the reference code's KDE30: whole top embeddings plus a shared shift),
      "neighbourhood" (PCA map), "neighbourhood_umap" (the reference UMAP map), "gan",
      "uniform" (the zoo's bounding box), "uniform_reference" (U(-1, 1)^D), "pairs" (two top
      models mixed), or any sampler module added here.
    key: PRNG key. embeddings: [N, D]. scores: [N] (e.g. test accuracy), higher is better.
    num_samples: S >= 1.
    config: optional mapping (dict or ConfigDict) with any of DRAW_DEFAULTS' fields:
      bandwidth, top_fraction, dims, gan_size, gan (GANConfig overrides), umap_neighbors,
      umap_min_dist, mix.
  Returns:
    [S, D] float32.
  """
  sampler = registry.load(__name__, name, "sampler")
  config = dict(config or {})
  unknown = set(config) - set(DRAW_DEFAULTS)
  if unknown:
    raise ValueError(
      f"Unknown sampler config fields {sorted(unknown)}; allowed: {list(DRAW_DEFAULTS)}."
    )
  config = {**DRAW_DEFAULTS, **config}
  embeddings = _checks.check_embeddings(embeddings)
  scores = _checks.check_scores(scores, embeddings.shape[0])
  num_samples = _checks.check_num_samples(num_samples)
  # Checked for every sampler, whether it reads them or not, so that a bad value fails early.
  _checks.check_fraction(config["top_fraction"], "config.top_fraction")
  _checks.check_bandwidth(config["bandwidth"], "config.bandwidth")
  return sampler.draw(key, embeddings, scores, num_samples, config)
