"""Weight-space learning: params as vectors, tokens and chunks; symmetries, augmentations, stats.

Every function is pure and works on one model or, through leading batch axes or `vmap`,
on a population [P, ...]; random ones take an explicit key. The `WeightSpec` (from
`make_spec`, or returned by `flatten` / `tokenize` / `chunk`) is the static layout that
turns arrays back into params, and serialises to JSON.

jit is the caller's: what runs inside a training or sampling step (the augmentations,
`random_permutation`, `per_token`, `detokenize`) is traced into the caller's jitted step and
is not jitted here; what an edge applies to whole zoos (`flatten`, `unflatten`, `tokenize`,
`chunk`, `statnn_features`, `canonicalize`, `permute`) is jitted here, once, as its boundary.
"""

from zoo_jax.weights.augment import add_noise, erasing_mask, multiply_noise, random_erase
from zoo_jax.weights.chunks import Chunks, chunk, chunk_layout, unchunk
from zoo_jax.weights.flat import flatten, unflatten
from zoo_jax.weights.hygiene import StateFilter, filter_states, layer_rms
from zoo_jax.weights.matching import activation_matching, align, weight_matching
from zoo_jax.weights.spec import LayerSpec, ParamSpec, WeightSpec, make_spec
from zoo_jax.weights.stats import (
  layer_variances,
  novelty,
  per_token,
  statnn_feature_names,
  statnn_features,
  token_layer_variances,
)
from zoo_jax.weights.symmetry import (
  canonical_permutations,
  canonicalize,
  neuron_arrays,
  permute,
  random_permutation,
  sample_permutations,
)
from zoo_jax.weights.tokens import Tokens, detokenize, token_dim, token_layout, tokenize

__all__ = [
  "Chunks",
  "LayerSpec",
  "ParamSpec",
  "StateFilter",
  "Tokens",
  "WeightSpec",
  "activation_matching",
  "add_noise",
  "align",
  "canonical_permutations",
  "canonicalize",
  "chunk",
  "chunk_layout",
  "detokenize",
  "erasing_mask",
  "filter_states",
  "flatten",
  "layer_rms",
  "layer_variances",
  "make_spec",
  "multiply_noise",
  "novelty",
  "per_token",
  "permute",
  "random_erase",
  "random_permutation",
  "sample_permutations",
  "statnn_feature_names",
  "statnn_features",
  "token_dim",
  "token_layer_variances",
  "token_layout",
  "tokenize",
  "unchunk",
  "unflatten",
  "weight_matching",
]
