import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from zoo_jax import models
from zoo_jax.engine import population as pop
from zoo_jax.models import fast_conv

_NHWC = ("NHWC", "HWIO", "NHWC")


def _close(a, b, rtol=1e-4, atol=1e-5):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


FAST = ["patches", "taps"]  # the conv_impl forms written here, against XLA's own ("xla")


@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("strides", [(1, 1), (2, 2), (2, 3)])
@pytest.mark.parametrize("padding", ["VALID", "SAME", ((1, 2), (0, 1))])
def test_fast_conv_and_its_gradients_equal_lax_conv(impl, strides, padding):
  x = jax.random.normal(jax.random.key(0), (2, 9, 10, 3))
  w = jax.random.normal(jax.random.key(1), (3, 2, 3, 5))
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, _NHWC)
  conv = lambda f: lambda x, w: f(x, w, strides, padding, dimension_numbers=dn)
  ref, fast = conv(jax.lax.conv_general_dilated), conv(fast_conv.CONV_IMPLS[impl])
  _close(fast(x, w), ref(x, w))
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))  # a non-uniform cotangent
  _close(jax.grad(loss(fast), argnums=(0, 1))(x, w), jax.grad(loss(ref), argnums=(0, 1))(x, w))


@pytest.mark.parametrize("strides,padding", [((1, 1), "VALID"), ((2, 3), "SAME")])
def test_taps_conv_gradients_equal_lax_conv_vmapped(strides, padding):
  """Models with their own kernels and images, as a population trains: the custom VJP batched."""
  xs = jax.random.normal(jax.random.key(0), (2, 2, 9, 10, 3))
  ws = jax.random.normal(jax.random.key(1), (2, 3, 2, 3, 5))
  dn = jax.lax.conv_dimension_numbers(xs.shape[1:], ws.shape[1:], _NHWC)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w, strides, padding, dimension_numbers=dn)))
  grads = lambda f: jax.vmap(jax.grad(loss(f), argnums=(0, 1)))(xs, ws)
  _close(grads(fast_conv.taps_conv), grads(jax.lax.conv_general_dilated), atol=1e-4)


@pytest.mark.parametrize("impl", FAST)
def test_fast_conv_rejects_what_it_does_not_implement(impl):
  conv = fast_conv.CONV_IMPLS[impl]
  x, w = jnp.zeros((1, 8, 8, 2)), jnp.zeros((3, 3, 2, 4))
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, _NHWC)
  with pytest.raises(ValueError, match="dilations"):
    conv(x, w, (1, 1), "VALID", rhs_dilation=(2, 2), dimension_numbers=dn)
  with pytest.raises(ValueError, match="NHWC"):
    conv(x, w, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"))


# The zoo architectures at their input sizes: CNN-s (VALID, stride 1, pools), CNN-l (odd sizes
# before pooling), the Small CNN Zoo net (stride 2, VALID).
ARCHS = [("cnn_s", (28, 28, 1)), ("cnn_l", (32, 32, 3)), ("cnn_zoo", (28, 28, 1))]


@pytest.mark.parametrize("impl", FAST)
@pytest.mark.parametrize("arch,shape", ARCHS)
def test_fast_model_equals_xla_model_alone_and_vmapped(arch, shape, impl):
  """Same logits and parameter gradients, for one model and for P models with their own data."""
  xla, fast = (
    models.get_model(arch, activation="tanh", init="kaiming_uniform", conv_impl=name)
    for name in ("xla", impl)
  )
  p = 3
  x = jax.random.normal(jax.random.key(0), (p, 4) + shape)
  labels = jax.random.randint(jax.random.key(1), (p, 4), 0, 10)
  params = jax.jit(jax.vmap(lambda k: xla.init(k, x[0])["params"]))(
    jax.random.split(jax.random.key(2), p)
  )

  def loss(model):
    return lambda w, x, y: pop.cross_entropy(model.apply({"params": w}, x), y)

  one = jax.tree.map(lambda a: a[0], params)
  value_and_grad = lambda model: jax.jit(jax.value_and_grad(loss(model)))
  _close(value_and_grad(fast)(one, x[0], labels[0]), value_and_grad(xla)(one, x[0], labels[0]))
  # vmapped over models, as the population trains them (the form whose lowering differs).
  batched = lambda model: jax.jit(jax.vmap(jax.value_and_grad(loss(model))))
  _close(batched(fast)(params, x, labels), batched(xla)(params, x, labels))
  logits = lambda model: jax.jit(jax.vmap(lambda w, x: model.apply({"params": w}, x)))
  _close(logits(fast)(params, x), logits(xla)(params, x))


@pytest.mark.parametrize("fast", FAST)
def test_population_trains_the_same_with_a_fast_conv(mnist5k, fast):
  d = mnist5k["train"]
  n, batch = 60, 10
  x, y = jnp.asarray(d.images[:n]), jnp.asarray(d.labels[:n])
  cohort = pop.Cohort("cnn_s", "tanh", "adam", use_dropout=True)
  states, metrics = {}, {}
  for impl in ("xla", fast):
    state = pop.create_population(
      cohort,
      np.array([1, 2, 3]),
      np.array(["kaiming_uniform"] * 3),
      np.array([1e-3, 3e-3, 1e-3]),
      np.array([0.0, 1e-4, 0.0]),
      np.array([0.0, 0.2, 0.5]),
      d.image_shape,
    )
    epoch_fn = pop.make_train_epoch(
      cohort, batch_size=batch, num_train=n, mean=d.mean, std=d.std, conv_impl=impl
    )
    for _ in range(2):
      state, _ = epoch_fn(state, x, y)
    states[impl] = state
    metrics[impl] = pop.make_evaluate(
      cohort, batch_size=32, mean=d.mean, std=d.std, conv_impl=impl
    )(state.params, x, y)
  # 12 Adam steps amplify float reordering (~1e-7 per op) far less than the differences
  # between models (order 1e-1).
  _close(states[fast].params, states["xla"].params, rtol=1e-4, atol=1e-5)
  _close(metrics[fast], metrics["xla"], rtol=1e-4, atol=1e-6)


def test_unknown_conv_impl_is_a_clear_error():
  with pytest.raises(ValueError, match="conv_impl 'cudnn'.*allowed values"):
    pop.make_model(pop.Cohort("cnn_s", "tanh", "adam", False), conv_impl="cudnn")


@pytest.mark.parametrize(
  "shape", [(2, 24, 24, 8), (2, 15, 13, 3)]
)  # even, and odd (VALID drops the last row)
def test_max_pool_2x2_and_its_gradient_equal_flax_max_pool(shape):
  x = jax.random.normal(jax.random.key(0), shape)
  ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
  _close(fast_conv.max_pool_2x2(x), ref(x), rtol=0, atol=0)
  loss = lambda pool: lambda x: jnp.sum(jnp.sin(pool(x)))
  _close(jax.grad(loss(fast_conv.max_pool_2x2))(x), jax.grad(loss(ref))(x), rtol=0, atol=0)


def test_config_conv_impl_is_validated():
  from configs import mnist5k
  from zoo_jax import train

  config = mnist5k.get_config()
  config.conv_impl = "cudnn"
  with pytest.raises(
    ValueError, match=r"config.conv_impl 'cudnn'.*allowed values: \['xla', 'patches', 'taps'\]"
  ):
    train.validate_config(config)
