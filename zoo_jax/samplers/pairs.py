"""Sampler "pairs": (1 - t) a + t b for random pairs (a, b) of the top `top_fraction` models.

Mixing is only meaningful where the coordinates of different models correspond: in the weight
space of models aligned to one reference (zoo_jax.sample's `config.space="aligned_weights"`, where
the sample command also restores each mixed unit's statistics, REPAIR). `mix` is t: 0 copies a
top model, 0.5 is a pair's midpoint; each draw moves toward its second model by t, so a draw is
a copy of neither while both ends are good models.
"""

import functools

import jax
import jax.numpy as jnp

from zoo_jax.samplers import _checks, _top

DEFAULT_MIX = 0.3
DEFAULTS = {"top_fraction": _top.DEFAULT_TOP_FRACTION, "mix": DEFAULT_MIX}


@functools.partial(jax.jit, static_argnames="num_samples")
def _pairs(key: jax.Array, top: jax.Array, num_samples: int, mix: jax.Array) -> jax.Array:
  first_key, second_key = jax.random.split(key)
  first = jax.random.randint(first_key, (num_samples,), 0, len(top))
  # The second model is any other one: an offset in [1, K) from the first.
  second = (first + jax.random.randint(second_key, (num_samples,), 1, len(top))) % len(top)
  return (1 - mix) * top[first] + mix * top[second]


def pairs_sample(key: jax.Array, top, num_samples: int, mix: float = DEFAULT_MIX) -> jax.Array:
  """[S, D] mixtures (1 - mix) a + mix b of two distinct rows of top [K >= 2, D]."""
  top = jnp.asarray(_checks.check_embeddings(top, "top"))
  if len(top) < 2:
    raise ValueError(f"The pairs sampler needs at least 2 top models, got {len(top)}.")
  if not 0 <= mix <= 1:
    raise ValueError(f"config.mix must be in [0, 1] (0: a copy of a top model), got {mix!r}.")
  return _pairs(key, top, _checks.check_num_samples(num_samples), jnp.float32(mix))


def draw(key: jax.Array, embeddings, scores, num_samples: int, config) -> jax.Array:
  """[S, D] pair mixtures of the top rows of embeddings [N, D] by scores [N]."""
  top = _top.select_top(embeddings, scores, config["top_fraction"])
  if len(top) < 2:  # a small zoo: at least the best two
    top = embeddings[_top.top_indices(scores, 1.0)[:2]]
  return pairs_sample(key, top, num_samples, config["mix"])
