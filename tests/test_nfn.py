"""The NFN encoder: the neuron view of the weight space, and predictions invariant to the
hidden-unit permutations (and, for HNP only, not to a reordering of the classes)."""

import jax
import numpy as np
import pandas as pd
import pytest

from configs import nfn as nfn_config
from param_trees import ARCHS, random_params
from zoo_jax import weights
from zoo_jax.encoders import methods
from zoo_jax.encoders.methods import nfn
from zoo_jax.encoders.states import ZooStates


@pytest.mark.parametrize("arch", ARCHS)
def test_neuron_arrays_move_with_a_hidden_permutation(arch):
  """Permuting layer l's units permutes `out` of layer l and `in` of layer l+1, nothing else."""
  params = random_params(arch, batch=(2,))
  spec = weights.make_spec(params, batch_ndim=1)
  perms = weights.sample_permutations(jax.random.key(0), spec)
  before = weights.neuron_arrays(params, spec)
  after = weights.neuron_arrays(weights.permute(params, perms, spec), spec)
  assert len(before) == len(spec.layers)
  for l, ((w, b), (pw, pb)) in enumerate(zip(before, after)):
    assert w.ndim == 4 and w.shape[1] == spec.layers[l].units and b.shape == w.shape[:2]
    assert w.size == spec.layers[l].param("kernel").size * 2
    if l < len(perms):  # this layer's units
      w, b = w[:, perms[l]], b[:, perms[l]]
    if l > 0:  # the previous layer's units are this layer's inputs
      w = w[:, :, perms[l - 1]]
    np.testing.assert_array_equal(pw, w)
    np.testing.assert_array_equal(pb, b)


@pytest.mark.parametrize("variant", nfn.VARIANTS)
@pytest.mark.parametrize(
  "arch, readout, scale_embedding, standardized",
  [("cnn_s", "mean", False, True), ("mlp", "moments", True, False)],
)
def test_prediction_is_invariant_to_hidden_permutations(
  variant, arch, readout, scale_embedding, standardized
):
  params = random_params(arch, batch=(3,), seed=1)
  spec = weights.make_spec(params, batch_ndim=1)
  flat = np.asarray(weights.flatten(params, spec)[0])
  scale = nfn.log_rms(nfn.neuron_inputs(flat, spec))
  module = nfn.NFN(
    num_outputs=4,
    channels=(8, 8),
    variant=variant,
    readout=readout,
    scale_embedding=scale_embedding,
    scale_center=tuple(scale.mean(0)) if standardized else (),
    scale_spread=tuple(scale.std(0) + 1e-6) if standardized else (),
  )
  inputs = nfn.neuron_inputs(flat, spec)
  variables = module.init(jax.random.key(0), inputs)
  out = module.apply(variables, inputs)
  permuted = weights.random_permutation(jax.random.key(3), weights.unflatten(flat, spec), spec)
  permuted_out = module.apply(
    variables, nfn.neuron_inputs(np.asarray(weights.flatten(permuted, spec)[0]), spec)
  )
  assert np.all(np.isfinite(out)) and np.std(out[:, 0]) > 0  # models get different predictions
  np.testing.assert_allclose(permuted_out, out, rtol=1e-4, atol=1e-5)
  # Reordering the classes (the last layer's outputs) is no symmetry of the network: HNP keeps
  # the classes' identity and sees it; NP treats them as one more permutable axis.
  layers = nfn.neuron_inputs(flat, spec)
  order = np.roll(np.arange(layers[-1][0].shape[1]), 1)
  swapped = (*layers[:-1], (layers[-1][0][:, order], layers[-1][1][:, order]))
  swapped_out = module.apply(variables, swapped)
  if variant == "hnp":
    assert np.max(np.abs(swapped_out - out)) > 1e-3
  else:
    np.testing.assert_allclose(swapped_out, out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("field, value", [("variant", "full"), ("readout", "max")])
def test_unknown_choice_names_the_field(field, value):
  params = random_params("mlp", batch=(1,))
  spec = weights.make_spec(params, batch_ndim=1)
  inputs = nfn.neuron_inputs(np.asarray(weights.flatten(params, spec)[0]), spec)
  with pytest.raises(ValueError, match=f"nfn.model.{field} .* allowed values"):
    nfn.NFN(num_outputs=1, **{field: value}).init(jax.random.key(0), inputs)


def test_standardized_scale_is_the_training_states_z_score():
  """`standardize_scale`: build centres and spreads each layer's log-RMS on the training states, so
  the embedding's scale columns are their z-scores; a model scaled up reads as larger."""
  params = random_params("cnn_s", batch=(1,), seed=2)
  spec = weights.make_spec(params, batch_ndim=1)
  flat = np.asarray(weights.flatten(params, spec)[0])  # one model at eight scales
  flat = flat * np.linspace(0.5, 2.0, 8, dtype=np.float32)[:, None]
  np.testing.assert_allclose(
    nfn.log_rms(nfn.neuron_inputs(flat, spec)), np.log(weights.layer_rms(flat, spec)), atol=1e-5
  )
  table = pd.DataFrame({"zoo": "z", "model_id": np.arange(8), "epoch": 1})
  train = ZooStates("z", table, flat, spec)
  config = nfn_config.get_config()
  config.nfn.model.channels = (4,)
  config.nfn.model.standardize_scale = True
  fit = methods.Fit(config, train, [train], seed=0, checkpoint_dir="", save_dir=None)
  network = nfn.build(fit, num_outputs=1)
  inputs = network.inputs(train)
  variables = network.module.init(jax.random.key(0), inputs)
  scale = network.embed(variables, train)[:, -len(spec.layers) :]
  np.testing.assert_allclose(scale.mean(0), 0.0, atol=1e-4)
  np.testing.assert_allclose(scale.std(0), 1.0, atol=1e-3)
  assert np.all(np.diff(scale, axis=0) > 0)  # every layer grows with the model's scale
