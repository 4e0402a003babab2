"""Weight matching: recovers planted permutations, keeps every model's function."""

import jax
import numpy as np
import pytest

from zoo_jax.engine import population
from zoo_jax import weights
from zoo_jax.engine.population import Cohort


def _two_models(arch):
  cohort = Cohort(arch, "relu", "adam", False)
  params = population.init_params(
    cohort, np.array([1, 2]), np.array(["kaiming_uniform"] * 2), (28, 28, 1)
  )
  return cohort, jax.tree.map(lambda x: x[0], params), jax.tree.map(lambda x: x[1], params)


@pytest.mark.parametrize("arch", ["cnn_s", "mlp"])
def test_alignment_keeps_the_function_and_recovers_planted_permutations(arch):
  cohort, a, b = _two_models(arch)
  spec = weights.make_spec(a)
  model = population.make_model(cohort)
  x = jax.random.normal(jax.random.key(0), (8, 28, 28, 1))
  aligned = weights.align(a, b, spec)
  np.testing.assert_allclose(
    model.apply({"params": aligned}, x), model.apply({"params": b}, x), atol=1e-5
  )
  flat = lambda p: np.asarray(weights.flatten(p)[0])
  assert np.linalg.norm(flat(aligned) - flat(a)) < np.linalg.norm(flat(b) - flat(a))
  shuffled = weights.random_permutation(jax.random.key(1), a, spec)  # a in disguise
  np.testing.assert_array_equal(flat(weights.align(a, shuffled, spec)), flat(a))


def test_identical_models_need_no_permutation():
  _, a, _ = _two_models("cnn_s")
  for perm, layer in zip(weights.weight_matching(a, a), weights.make_spec(a).layers):
    np.testing.assert_array_equal(perm, np.arange(layer.units))


def test_batched_params_are_refused():
  cohort = Cohort("mlp", "relu", "adam", False)
  params = population.init_params(
    cohort, np.array([1, 2]), np.array(["kaiming_uniform"] * 2), (28, 28, 1)
  )
  single = jax.tree.map(lambda x: x[0], params)
  with pytest.raises(ValueError, match="single models"):
    weights.weight_matching(single, params, weights.make_spec(single))
