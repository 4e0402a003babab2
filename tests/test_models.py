import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo_jax import models


def _count(params):
  return sum(x.size for x in jax.tree.leaves(params))


@pytest.mark.parametrize(
  "arch,shape,expected",
  [("cnn_s", (28, 28, 1), 2464), ("cnn_s", (28, 28, 3), 2864), ("cnn_l", (32, 32, 3), 10853)],
)
def test_parameter_counts_match_model_zoos(arch, shape, expected):
  params = models.get_model(arch).init(jax.random.key(0), jnp.zeros((1,) + shape))
  assert _count(params) == expected


@pytest.mark.parametrize("arch,shape", [("cnn_s", (28, 28, 1)), ("cnn_l", (32, 32, 3))])
@pytest.mark.parametrize("activation", sorted(models.ACTIVATIONS))
def test_every_activation_gives_finite_logits(arch, shape, activation):
  model = models.get_model(arch, activation=activation, init="kaiming_normal")
  x = jax.random.normal(jax.random.key(1), (3,) + shape)
  params = model.init(jax.random.key(0), x)
  logits = model.apply(params, x)
  assert logits.shape == (3, 10)
  assert np.all(np.isfinite(logits))


def test_activations_follow_pytorch_conventions():
  x = jnp.linspace(-3, 3, 13)
  np.testing.assert_allclose(
    models.ACTIVATIONS["leaky_relu"](x), np.where(x > 0, x, 0.01 * x), rtol=1e-6
  )
  from scipy.special import erf

  np.testing.assert_allclose(
    models.ACTIVATIONS["gelu"](x), 0.5 * x * (1 + erf(x / np.sqrt(2))), atol=1e-6
  )


def _kernels(init, seed=0):
  params = models.get_model("cnn_s", init=init).init(
    jax.random.key(seed), jnp.zeros((1, 28, 28, 1))
  )["params"]
  return params


@pytest.mark.parametrize("init", sorted(models.INITS))
def test_biases_start_at_0_01(init):
  params = _kernels(init)
  for layer in params.values():
    np.testing.assert_array_equal(layer["bias"], np.full(layer["bias"].shape, 0.01, np.float32))


def test_init_distributions():
  params = _kernels("uniform")
  k = np.asarray(params["conv_1"]["kernel"])  # 1,200 weights
  assert k.min() >= 0 and k.max() < 1 and abs(k.mean() - 0.5) < 0.03
  k = np.asarray(_kernels("normal")["conv_1"]["kernel"])
  assert abs(k.std() - 1.0) < 0.05
  fan_in = 5 * 5 * 8
  k = np.asarray(_kernels("kaiming_uniform")["conv_1"]["kernel"])
  assert np.abs(k).max() <= np.sqrt(6 / fan_in) + 1e-6 and abs(k.std() - np.sqrt(2 / fan_in)) < 0.01
  k = np.asarray(_kernels("kaiming_normal")["conv_1"]["kernel"])
  assert abs(k.std() - np.sqrt(2 / fan_in)) < 0.01 and np.abs(k).max() > 2 * np.sqrt(
    2 / fan_in
  )  # untruncated
  fan_avg = (5 * 5 * 8 + 5 * 5 * 6) / 2
  k = np.asarray(_kernels("xavier_uniform")["conv_1"]["kernel"])
  assert np.abs(k).max() <= np.sqrt(3 / fan_avg) + 1e-6
  k = np.asarray(_kernels("xavier_normal")["conv_1"]["kernel"])
  assert abs(k.std() - np.sqrt(1 / fan_avg)) < 0.01


def test_pool_comes_before_activation():
  # With GELU (not monotone) pool-then-act differs from act-then-pool; check the former.
  model = models.get_model("cnn_s", activation="gelu", init="kaiming_uniform")
  x = jax.random.normal(jax.random.key(3), (2, 28, 28, 1))
  params = model.init(jax.random.key(0), x)
  _, inter = model.apply(params, x, capture_intermediates=True, mutable=["intermediates"])
  conv0 = inter["intermediates"]["conv_0"]["__call__"][0]
  import flax.linen as nn

  expected = models.ACTIVATIONS["gelu"](nn.max_pool(conv0, (2, 2), strides=(2, 2)))
  k1 = params["params"]["conv_1"]
  manual = (
    jax.lax.conv_general_dilated(
      expected, k1["kernel"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    + k1["bias"]
  )
  conv1 = inter["intermediates"]["conv_1"]["__call__"][0]
  np.testing.assert_allclose(conv1, manual, atol=1e-5)


def test_dropout_is_identity_without_key_and_scales_with_key():
  model = models.get_model("mlp", use_dropout=True)
  x = jax.random.normal(jax.random.key(3), (64, 4, 4, 1))
  params = model.init(jax.random.key(0), x)
  np.testing.assert_array_equal(model.apply(params, x, 0.5), model.apply(params, x))
  a = model.apply(params, x, 0.5, jax.random.key(1))
  b = model.apply(params, x, 0.5, jax.random.key(2))
  assert not np.allclose(a, b)
  np.testing.assert_allclose(
    model.apply(params, x, 0.0, jax.random.key(1)), model.apply(params, x), rtol=1e-6
  )
  h = models.dropout(jnp.ones((10000,)), 0.25, jax.random.key(0))
  assert abs(float(jnp.mean(h == 0)) - 0.25) < 0.02 and float(h.max()) == pytest.approx(1 / 0.75)


@pytest.mark.parametrize(
  "field,kwargs",
  [
    ("model.arch", dict(arch="resnet")),
    ("activation", dict(arch="cnn_s", activation="swish")),
    ("init", dict(arch="cnn_s", init="orthogonal")),
  ],
)
def test_unknown_names_are_clear_errors(field, kwargs):
  arch = kwargs.pop("arch")
  with pytest.raises(ValueError, match=field) as info:
    models.get_model(arch, **kwargs)
  assert "allowed values" in str(info.value)
