"""zoo_jax.weights.filter_states: planted blown-up and non-finite states are dropped, good ones kept."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo_jax import weights
from zoo_jax.models import get_model


def _zoo(num=40, seed=0):
  """`num` kaiming-initialised CNN-s, as flat vectors, and their spec."""
  model = get_model("cnn_s", activation="tanh", init="kaiming_uniform")
  keys = jax.random.split(jax.random.key(seed), num)
  params = jax.jit(jax.vmap(lambda k: model.init(k, jnp.zeros((1, 28, 28, 1)))))(keys)
  flat, spec = weights.flatten(params)
  return np.array(flat), spec


def test_planted_blown_up_and_non_finite_states_are_dropped():
  flat, spec = _zoo()
  layer = spec.layers[1]
  blown = [3, 17]
  for i, factor in zip(blown, (50.0, 2_700.0)):  # one layer blown up, as relu/SGD states do
    flat[i, layer.offset : layer.offset + layer.size] *= factor
  flat[25, 7] = np.nan
  flat[31, -1] = np.inf
  checked = weights.filter_states(flat, spec)
  assert np.flatnonzero(checked.blown_up).tolist() == blown
  assert np.flatnonzero(checked.non_finite).tolist() == [25, 31]
  assert checked.keep.sum() == 36 and not checked.keep[[3, 17, 25, 31]].any()
  assert "kept 36 of 40" in checked.summary() and "2 non-finite" in checked.summary()
  # The per-layer RMS is the numpy one.
  expected = np.sqrt(
    np.mean(flat[0, layer.offset : layer.offset + layer.size].astype(np.float64) ** 2)
  )
  np.testing.assert_allclose(checked.layer_rms[0, 1], expected, rtol=1e-12)


def test_good_states_of_different_scales_are_kept():
  """U(0,1) inits and trained states differ from kaiming by a few x in RMS: none is dropped."""
  flat, spec = _zoo()
  flat[:10] *= 4.0  # a quarter of the zoo at 4x the scale
  flat[10:20] += 0.3
  checked = weights.filter_states(flat, spec)
  assert checked.keep.all()


def test_absolute_threshold_and_disabled_rules():
  flat, spec = _zoo(num=8)
  flat[2, 0] = 7.0
  assert np.flatnonzero(~weights.filter_states(flat, spec, max_abs=5.0).keep).tolist() == [2]
  flat[5] *= 1e4
  assert weights.filter_states(flat, spec, max_ratio=None).keep.all()
  with pytest.raises(ValueError, match="max_ratio must be > 1"):
    weights.filter_states(flat, spec, max_ratio=0.5)
  with pytest.raises(ValueError, match=r"flat must have shape \[N, 2464\]"):
    weights.filter_states(flat[:, :10], spec)
