"""Variational dropout over a population (Molchanov et al., 2017), as the Model Zoos' CNN_ARD twins.

The math of zoo_jax.sparsify's twins and the converter's twin import: log alpha, the KL
approximation, the deployed (sparse) weights, and the population epoch (vmap over models,
lax.scan over steps) that trains a cohort of twins; see zoo_jax/sparsify.py for the protocol.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo_jax.engine import population
from zoo_jax.models.cnn import ACTIVATIONS

ARCHS = ("cnn_s", "cnn_l")  # the architectures with a CNN_ARD twin
_K1, _K2, _K3 = 0.63576, 1.8732, 1.48695
_CLAMP = {"conv": 8.0, "dense": 10.0}  # |log alpha| bounds of Conv2dARD and LinearARD
_LAYERS = {
  "cnn_s": (
    "conv_0",
    "pool",
    "act",
    "conv_1",
    "pool",
    "act",
    "conv_2",
    "act",
    "flatten",
    "dense_0",
    "act",
    "dense_1",
  ),
  "cnn_l": (
    "conv_0",
    "pool",
    "act",
    "conv_1",
    "pool",
    "act",
    "conv_2",
    "pool",
    "act",
    "flatten",
    "dense_0",
    "act",
    "dense_1",
  ),
}


def log_alpha(params: Any, log_sigma2: Any) -> Any:
  """log alpha per weight (and conv bias): log sigma^2 - log w^2, clamped as in the Model Zoos."""
  out = {}
  for name, layer in log_sigma2.items():
    bound = _CLAMP[name.split("_")[0]]
    out[name] = {
      k: jnp.clip(v - 2 * jnp.log(jnp.abs(params[name][k]) + 1e-15), -bound, bound)
      for k, v in layer.items()
    }
  return out


def init_log_sigma2(params: Any, value: float) -> Any:
  """log sigma^2 for every weight, and for the convolutions' biases (LinearARD leaves its bias alone)."""
  return {
    name: {
      k: jnp.full_like(v, value)
      for k, v in layer.items()
      if k == "kernel" or name.startswith("conv")
    }
    for name, layer in params.items()
  }


def kl(params: Any, log_sigma2: Any) -> jax.Array:
  """The KL approximation of Molchanov et al. (2017), summed over every variational parameter."""
  total = 0.0
  for leaf in jax.tree.leaves(log_alpha(params, log_sigma2)):
    neg_kl = _K1 * jax.nn.sigmoid(_K2 + _K3 * leaf) - 0.5 * jnp.log1p(jnp.exp(-leaf)) - _K1
    total = total - jnp.sum(neg_kl)
  return total


def deployed(params: Any, log_sigma2: Any, threshold: float = 3.0) -> Any:
  """The sparse weights: every weight (and conv bias) with log alpha >= threshold set to 0."""
  alpha = log_alpha(params, log_sigma2)
  return {
    name: {
      k: jnp.where(alpha[name][k] >= threshold, 0.0, v) if k in alpha.get(name, {}) else v
      for k, v in layer.items()
    }
    for name, layer in params.items()
  }


def sparsity(params: Any, log_sigma2: Any, threshold: float = 3.0) -> jax.Array:
  """Fraction of the weights (kernels, not biases) with log alpha >= threshold."""
  alpha = log_alpha(params, log_sigma2)
  dropped = sum(jnp.sum(alpha[name]["kernel"] >= threshold) for name in alpha)
  total = sum(alpha[name]["kernel"].size for name in alpha)
  return dropped / total


def _conv(x, kernel):
  return jax.lax.conv_general_dilated(
    x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def _pool(x):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def apply_vd(
  arch: str, activation: str, params: Any, log_sigma2: Any, x: jax.Array, key: jax.Array | None
):
  """Logits of a CNN-s / CNN-l under variational dropout: with `key`, the local reparameterisation
  trick (pre-activations ~ N(mu, sigma^2)); with key=None, the mean network (weights unclipped)."""
  alpha = jax.tree.map(jnp.exp, log_alpha(params, log_sigma2))
  act = ACTIVATIONS[activation]
  for i, op in enumerate(_LAYERS[arch]):
    if op == "pool":
      x = _pool(x)
    elif op == "act":
      x = act(x)
    elif op == "flatten":
      x = x.reshape(x.shape[0], -1)
    else:
      w, b = params[op]["kernel"], params[op]["bias"]
      linear = _conv if op.startswith("conv") else jnp.matmul
      mean = linear(x, w) + b
      if key is None:
        x = mean
        continue
      var = linear(x * x, alpha[op]["kernel"] * w * w)
      if op.startswith("conv"):  # Conv2dARD gives its bias a variance too
        var = var + alpha[op]["bias"] * b * b
      x = mean + jnp.sqrt(var + 1e-15) * jax.random.normal(jax.random.fold_in(key, i), mean.shape)
  return x


@flax.struct.dataclass
class TwinState:
  params: Any  # [P, ...]
  log_sigma2: Any  # [P, ...]
  opt_state: Any
  seed: jax.Array  # [P]


def create_twins(
  params: Any,
  optimizer: str,
  learning_rate: jax.Array,
  weight_decay: jax.Array,
  seeds: jax.Array,
  log_sigma2_init: float,
) -> TwinState:
  """The twins of a cohort's models `params` [P, ...]: log sigma^2 at `log_sigma2_init`, the
  source's optimizer (per-model learning rate and weight decay [P]) freshly initialised."""
  log_sigma2 = jax.vmap(lambda p: init_log_sigma2(p, log_sigma2_init))(params)
  make_tx = population.make_optimizer(optimizer)
  opt_state = jax.vmap(
    lambda p, s, lr, wd: make_tx(learning_rate=lr, weight_decay=wd).init(
      {"params": p, "log_sigma2": s}
    )
  )(params, log_sigma2, learning_rate, weight_decay)
  return TwinState(params, log_sigma2, opt_state, seeds)


def population_sparsity(params: Any, log_sigma2: Any, threshold: float = 3.0) -> jax.Array:
  """`sparsity` of every model of a population (leaves [P, ...]) -> [P]."""
  return jax.vmap(lambda p, s: sparsity(p, s, threshold))(params, log_sigma2)


def make_train_epoch(
  arch: str,
  activation: str,
  optimizer: str,
  *,
  batch_size: int,
  num_train: int,
  mean,
  std,
  epochs: int,
  kl_max: float,
):
  """Builds the jitted `train_epoch(state, images, labels, epoch) -> (state, loss [P])` of a cohort."""
  tx = population.make_optimizer(optimizer)(learning_rate=0.0, weight_decay=0.0)
  steps = num_train // batch_size

  def model_epoch(params, log_sigma2, opt_state, seed, epoch, images, labels):
    key = jax.random.fold_in(
      jax.random.fold_in(jax.random.key(seed), 2), epoch
    )  # stream 2: sparsification
    perm_key, noise_key = jax.random.split(key)
    order = jax.random.permutation(perm_key, num_train)[: steps * batch_size].reshape(
      steps, batch_size
    )
    kl_weight = jnp.minimum(1.0, kl_max * epoch / epochs)

    def loss_fn(variables, x, y, key):
      logits = apply_vd(arch, activation, variables["params"], variables["log_sigma2"], x, key)
      return population.cross_entropy(logits, y) + kl_weight * kl(
        variables["params"], variables["log_sigma2"]
      )

    def step(carry, inputs):
      variables, opt_state = carry
      idx, i = inputs
      x, y = population.normalize(images[idx], mean, std), labels[idx]
      loss, grads = jax.value_and_grad(loss_fn)(variables, x, y, jax.random.fold_in(noise_key, i))
      updates, opt_state = tx.update(grads, opt_state, variables)
      return (optax.apply_updates(variables, updates), opt_state), loss

    (variables, opt_state), losses = jax.lax.scan(
      step, ({"params": params, "log_sigma2": log_sigma2}, opt_state), (order, jnp.arange(steps))
    )
    return variables["params"], variables["log_sigma2"], opt_state, jnp.mean(losses)

  @jax.jit
  def train_epoch(state: TwinState, images, labels, epoch):
    params, log_sigma2, opt_state, loss = jax.lax.map(
      lambda m: model_epoch(*m, epoch, images, labels),
      (state.params, state.log_sigma2, state.opt_state, state.seed),
      batch_size=1,
    )
    return state.replace(params=params, log_sigma2=log_sigma2, opt_state=opt_state), loss

  return train_epoch


def make_evaluate(arch, activation, threshold, batch_size, mean, std):
  """Scores the deployed (sparse) weights of a cohort with the zoo's own evaluation."""
  evaluate = population.make_evaluate(
    population.Cohort(arch, activation, "adam", False), batch_size=batch_size, mean=mean, std=std
  )

  def run(state: TwinState, split) -> dict:
    sparse = jax.vmap(lambda p, s: deployed(p, s, threshold))(state.params, state.log_sigma2)
    m = evaluate(sparse, jnp.asarray(split.images), jnp.asarray(split.labels))
    return {"loss": np.asarray(m.loss), "acc": np.asarray(m.accuracy)}

  return run
