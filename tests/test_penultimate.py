"""Penultimate features: the head's input, caught without a second copy of the architecture."""

import jax
import numpy as np
import pytest

from zoo_jax.models import intercept
from zoo_jax.reuse import penultimate
from zoo_jax.engine import population
from zoo_jax.engine.population import Cohort


@pytest.mark.parametrize("arch", ["cnn_s", "mlp"])
def test_head_of_the_features_is_the_logits(arch):
  cohort = Cohort(arch, "tanh", "adam", False)
  params = population.init_params(
    cohort, np.array([1, 2, 3]), np.array(["kaiming_uniform"] * 3), (28, 28, 1)
  )
  images = np.random.default_rng(0).integers(0, 256, (7, 28, 28, 1), dtype=np.uint8)
  outputs = penultimate.make_outputs(
    cohort, mean=(0.1,), std=(0.3,), batch_size=4
  )  # 2 batches, one padded
  feats, logits = outputs(params, images)
  head = "dense_1" if arch == "cnn_s" else "dense_2"
  assert feats.shape == (3, 7, 20 if arch == "cnn_s" else 16) and logits.shape == (3, 7, 10)
  expected = (
    np.einsum("pnd,pdk->pnk", feats, np.asarray(params[head]["kernel"]))
    + np.asarray(params[head]["bias"])[:, None]
  )
  np.testing.assert_allclose(logits, expected, atol=1e-5)
  model = population.make_model(cohort)
  x = population.normalize(images, (0.1,), (0.3,))
  direct = jax.vmap(lambda p: model.apply({"params": p}, x))(params)
  np.testing.assert_allclose(logits, direct, atol=1e-5)


def test_layer_outputs_in_call_order():
  cohort = Cohort("cnn_s", "relu", "adam", False)
  params = population.init_params(cohort, np.array([1]), np.array(["kaiming_uniform"]), (28, 28, 1))
  one = jax.tree.map(lambda a: a[0], params)
  outs = intercept.layer_outputs(
    population.make_model(cohort), one, np.zeros((2, 28, 28, 1), np.float32)
  )
  assert [o.shape[-1] for o in outs] == [8, 6, 4, 20, 10]


@pytest.mark.parametrize("arch,conv_impl", [("cnn_s", "xla"), ("cnn_s", "taps"), ("cnn_l", "xla")])
def test_layer_inputs_times_the_kernel_are_the_layer_outputs(arch, conv_impl):
  cohort = Cohort(arch, "tanh", "adam", False)
  size, channels = (28, 1) if arch == "cnn_s" else (32, 3)
  params = population.init_params(
    cohort, np.array([3]), np.array(["kaiming_uniform"]), (size, size, channels)
  )
  one = jax.tree.map(lambda a: a[0], params)
  model = population.make_model(cohort, conv_impl=conv_impl)
  x = np.random.default_rng(0).normal(size=(3, size, size, channels)).astype(np.float32)
  inputs = intercept.layer_inputs(model, one, x)
  outputs = intercept.layer_outputs(model, one, x)
  names = [n for n in one if n.startswith(("conv", "dense"))]
  assert len(inputs) == len(outputs) == len(names)
  for name, rows, out in zip(sorted(names, key=lambda n: (n[0] == "d", n)), inputs, outputs):
    kernel = np.asarray(one[name]["kernel"])
    np.testing.assert_allclose(
      rows @ kernel.reshape(-1, kernel.shape[-1]) + np.asarray(one[name]["bias"]), out, atol=1e-4
    )


def test_conv_patches_handle_strides_and_same_padding():
  from zoo_jax.models import fast_conv

  x = np.random.default_rng(1).normal(size=(2, 9, 9, 4)).astype(np.float32)
  kernel = np.random.default_rng(2).normal(size=(3, 3, 4, 5)).astype(np.float32)
  direct = jax.lax.conv_general_dilated(
    x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  rows = fast_conv.conv_patches(x, (3, 3), (2, 2), "SAME")
  np.testing.assert_allclose(rows @ kernel.reshape(-1, 5), direct, atol=1e-4)
