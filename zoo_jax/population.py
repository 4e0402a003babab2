"""Population training: a cohort of same-structure models trained as one compiled program.

A cohort shares its static structure (architecture, activation, init, optimizer, whether
dropout is used); per-model learning rate, weight decay and dropout rate are arrays inside
the `vmap` (`optax.inject_hyperparams`). Model i's randomness comes from its own seed
only (never its position), so a model trains to the same weights alone or in a cohort.

The boundaries are visible here and only here: `vmap` over the model axis, `lax.scan`
over the steps of an epoch, `jit` around a whole epoch (one call, no per-step Python).
"""

from typing import Any, Callable, NamedTuple

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo_jax import models
from zoo_jax.models.fast_conv import CONV_IMPLS

OPTIMIZERS = ("adam", "sgd")
SGD_MOMENTUM = 0.9  # the Model Zoos SGD setting

# Streams derived from a model's seed: fold_in(key(seed), stream).
_INIT_STREAM, _TRAIN_STREAM = 0, 1


class Cohort(NamedTuple):
  """The static structure shared by the models of one vmap.

  The init method is not part of it: it only matters when weights are created, so
  models with different inits train in one cohort (fewer compilations).
  """

  arch: str
  activation: str
  optimizer: str
  use_dropout: bool


@flax.struct.dataclass
class PopulationState:
  """Training state of a cohort; every leaf has a leading model axis [P]."""

  params: Any  # pytree of [P, ...]
  opt_state: Any  # optax state of [P, ...], hyperparameters (lr, wd) inside
  seed: jax.Array  # int32 [P]: each model's own seed, the root of all its randomness
  dropout_rate: jax.Array  # float32 [P]
  diverged: jax.Array  # bool [P]: set once a loss or weight goes non-finite; then frozen
  epoch: jax.Array  # int32 [P]: epochs trained so far
  # The model's mutable collections ({"batch_stats": [P, ...]} for BatchNorm models), None for
  # models without (every CNN): their states keep exactly the leaves they always had.
  model_state: Any = None

  @property
  def size(self) -> int:
    return self.seed.shape[0]


class EpochMetrics(NamedTuple):
  loss: jax.Array  # [P] mean training loss over the epoch's steps
  accuracy: jax.Array  # [P]


def make_model(cohort: Cohort, num_classes: int = 10, init: str = "uniform", conv_impl: str = "xla") -> nn.Module:
  """The Flax module of a cohort (the single definition of its function).

  conv_impl: how its convolutions and max-pools are computed, "xla" or "patches" (models.fast_conv);
    the same function and parameters either way.
  """
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"Unknown conv_impl {conv_impl!r}; allowed values: {list(CONV_IMPLS)}.")
  return models.get_model(cohort.arch, activation=cohort.activation, init=init,
                          use_dropout=cohort.use_dropout, num_classes=num_classes, conv_impl=conv_impl)


def make_optimizer(name: str) -> Callable[..., optax.GradientTransformation]:
  """Optimizer factory `(learning_rate, weight_decay) -> tx` with injectable hyperparameters.

  Weight decay is L2 added to the gradient before the update, as PyTorch's
  `Adam(weight_decay=...)` and `SGD(weight_decay=...)` used by the Model Zoos do.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"Unknown optimizer {name!r}; allowed values: {list(OPTIMIZERS)}.")

  def tx(learning_rate, weight_decay):
    base = (optax.adam(learning_rate) if name == "adam"
            else optax.sgd(learning_rate, momentum=SGD_MOMENTUM))
    return optax.chain(optax.add_decayed_weights(weight_decay), base)

  return optax.inject_hyperparams(tx)


def init_params(cohort: Cohort, seeds: np.ndarray, inits: np.ndarray,
                input_shape: tuple[int, int, int], num_classes: int = 10) -> Any:
  """Initial weights [P, ...] of P models, model i from (seeds[i], inits[i]) alone."""
  return init_variables(cohort, seeds, inits, input_shape, num_classes)[0]


def init_variables(cohort: Cohort, seeds: np.ndarray, inits: np.ndarray,
                   input_shape: tuple[int, int, int], num_classes: int = 10) -> tuple[Any, Any]:
  """(params, model_state) [P, ...] of P models: the weights, and the mutable collections
  ({"batch_stats": ...} for BatchNorm models; None when the model has none)."""
  seeds, inits = np.asarray(seeds), np.asarray(inits)
  chex.assert_equal_shape([seeds, inits])
  dummy = jnp.zeros((1,) + tuple(input_shape))
  groups = []
  for init in dict.fromkeys(inits.tolist()):  # one vmapped init per method, in first-seen order
    model = make_model(cohort, num_classes, init)
    init_one = lambda seed: model.init(jax.random.fold_in(jax.random.key(seed), _INIT_STREAM), dummy)
    index = np.flatnonzero(inits == init)
    groups.append((index, jax.jit(jax.vmap(init_one))(jnp.asarray(seeds[index], jnp.int32))))
  order = np.argsort(np.concatenate([index for index, _ in groups]), kind="stable")
  variables = jax.tree.map(lambda *xs: jnp.concatenate(xs)[order], *[v for _, v in groups])
  params = variables.pop("params")
  return params, (dict(variables) or None)


def create_population(cohort: Cohort, seeds: np.ndarray, inits: np.ndarray, learning_rate: np.ndarray,
                      weight_decay: np.ndarray, dropout_rate: np.ndarray,
                      input_shape: tuple[int, int, int], num_classes: int = 10,
                      params: Any = None) -> PopulationState:
  """Creates the training state of P models of one cohort.

  Args:
    seeds, inits, learning_rate, weight_decay, dropout_rate: [P] per-model values.
    input_shape: (H, W, C) of one image.
    params: optional starting weights [P, ...] (e.g. sampled ones); by default each
      model's init method drawn from its own seed.
  """
  seeds = np.asarray(seeds)
  (p,) = seeds.shape
  hparams = [jnp.asarray(v, jnp.float32) for v in (learning_rate, weight_decay, dropout_rate)]
  chex.assert_shape(hparams, (p,))
  initial_params, model_state = init_variables(cohort, seeds, inits, input_shape, num_classes)
  if params is None:
    params = initial_params
  make_tx = make_optimizer(cohort.optimizer)
  opt_state = jax.jit(jax.vmap(lambda p, lr, wd: make_tx(learning_rate=lr, weight_decay=wd).init(p)))(
      params, hparams[0], hparams[1])
  seeds = jnp.asarray(seeds, jnp.int32)
  return PopulationState(params=params, opt_state=opt_state, seed=seeds, dropout_rate=hparams[2],
                         diverged=jnp.zeros((p,), bool), epoch=jnp.zeros((p,), jnp.int32), model_state=model_state)


def normalize(images: jax.Array, mean, std) -> jax.Array:
  """uint8 NHWC -> float32, scaled to [0, 1] then standardised per channel."""
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean NLL of log-softmax (the zoo's loss), for one model's batch."""
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1))


def _tree_all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_train_epoch(cohort: Cohort, *, batch_size: int, num_train: int, mean, std,
                     num_classes: int = 10, models_per_vmap: int = 0, conv_impl: str = "xla",
                     ) -> Callable[[PopulationState, jax.Array, jax.Array], tuple[PopulationState, EpochMetrics]]:
  """Builds the jitted `train_epoch(state, images, labels) -> (state, metrics)`.

  `images` uint8 [N, H, W, C] and `labels` int32 [N] are the whole training set, on the
  device and shared by the cohort. Each model draws its own permutation of them from
  (seed, epoch); the last incomplete batch is dropped. Metrics are per model [P].

  models_per_vmap: 0 vmaps the whole cohort (the accelerator choice); k > 0 vmaps k models
    at a time and runs the chunks one after another with `lax.map`, inside the same jitted
    call. On CPU, vmapped convolutions become grouped convolutions whose gradients XLA runs
    slowly, so k = 1 is several times faster there at P >= 16 (benchmarks/population_throughput.py).
  conv_impl: "xla" or "patches" (see make_model); "patches" turns vmapped convolutions into
    batched matmuls, the fast form on CPU.
  """
  model, make_tx = make_model(cohort, num_classes, conv_impl=conv_impl), make_optimizer(cohort.optimizer)
  tx = make_tx(learning_rate=0.0, weight_decay=0.0)  # the real values live in each opt_state
  steps = num_train // batch_size
  if steps < 1:
    raise ValueError(f"batch_size={batch_size} is larger than the training set ({num_train} images).")

  def model_epoch(params, opt_state, seed, dropout_rate, diverged, epoch, model_state, images, labels):
    epoch_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _TRAIN_STREAM), epoch)
    perm_key, dropout_key = jax.random.split(epoch_key)
    order = jax.random.permutation(perm_key, num_train)[: steps * batch_size].reshape(steps, batch_size)

    def loss_fn(p, model_state, x, y, key):
      key = key if cohort.use_dropout else None
      if model_state is None:
        logits = model.apply({"params": p}, x, dropout_rate, key)
      else:  # BatchNorm: batch statistics, and the running ones updated
        logits, model_state = model.apply({"params": p, **model_state}, x, dropout_rate, key, train=True,
                                          mutable=list(model_state))
      return cross_entropy(logits, y), (jnp.mean(jnp.argmax(logits, -1) == y), model_state)

    def step(carry, inputs):
      params, opt_state, model_state, diverged = carry
      idx, i = inputs
      x, y = normalize(images[idx], mean, std), labels[idx]
      (loss, (acc, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          params, model_state, x, y, jax.random.fold_in(dropout_key, i))
      updates, new_opt_state = tx.update(grads, opt_state, params)
      new_params = optax.apply_updates(params, updates)
      # A model whose loss or weights go non-finite is frozen at its last finite state.
      diverged = diverged | ~jnp.isfinite(loss) | ~_tree_all_finite(new_params)
      keep = lambda new, old: jnp.where(diverged, old, new)
      params = jax.tree.map(keep, new_params, params)
      opt_state = jax.tree.map(keep, new_opt_state, opt_state)
      model_state = jax.tree.map(keep, new_model_state, model_state)
      return (params, opt_state, model_state, diverged), (loss, acc)

    (params, opt_state, model_state, diverged), (losses, accs) = jax.lax.scan(
        step, (params, opt_state, model_state, diverged), (order, jnp.arange(steps)))
    return params, opt_state, model_state, diverged, jnp.mean(losses), jnp.mean(accs)

  def population_epoch(params, opt_state, seed, dropout_rate, diverged, epoch, model_state, images, labels):
    per_model = (params, opt_state, seed, dropout_rate, diverged, epoch, model_state)
    if models_per_vmap <= 0:
      return jax.vmap(model_epoch, in_axes=(0,) * 7 + (None, None))(*per_model, images, labels)
    return jax.lax.map(lambda m: model_epoch(*m, images, labels), per_model, batch_size=models_per_vmap)

  @jax.jit
  def train_epoch(state: PopulationState, images: jax.Array, labels: jax.Array):
    params, opt_state, model_state, diverged, loss, acc = population_epoch(
        state.params, state.opt_state, state.seed, state.dropout_rate, state.diverged, state.epoch,
        state.model_state, images, labels)
    loss = jnp.where(diverged, jnp.nan, loss)
    acc = jnp.where(diverged, jnp.nan, acc)
    state = state.replace(params=params, opt_state=opt_state, diverged=diverged, epoch=state.epoch + 1,
                          model_state=model_state)
    return state, EpochMetrics(loss, acc)

  return train_epoch


def make_evaluate(cohort: Cohort, *, batch_size: int, mean, std, num_classes: int = 10,
                  models_per_vmap: int = 0, conv_impl: str = "xla") -> Callable[..., Any]:
  """Builds the jitted `evaluate(params [P, ...], images [N, ...], labels [N], model_state=None) -> metrics [P]`.

  Every model sees the whole set in eval mode (no dropout; BatchNorm with the running statistics
  of `model_state`, the population state's mutable collections), in one jitted call: a `lax.scan`
  over batches of `batch_size` images (the last one padded and masked), per chunk of
  `models_per_vmap` models as in training (0: the whole cohort in one vmap; k > 0: chunks of
  k run one after another with `lax.map`), with the same `conv_impl`. `images` and `labels`
  may also be dicts {name: array} of several sets (e.g. the splits): then all are scored in
  the same call (one compilation) and a dict {name: metrics} is returned. An empty set
  (a split the protocol does not have) gives NaN metrics.
  """
  model = make_model(cohort, num_classes, conv_impl=conv_impl)

  def batches(images, labels):
    """[N, ...] -> [B, batch_size, ...], padded, with the mask of real images."""
    n = labels.shape[0]
    count = -(-n // batch_size)
    pad = count * batch_size - n
    images = jnp.pad(images, ((0, pad),) + ((0, 0),) * (images.ndim - 1))
    valid = (jnp.arange(count * batch_size) < n).reshape(count, batch_size)
    return (images.reshape((count, batch_size) + images.shape[1:]),
            jnp.pad(labels, (0, pad)).reshape(count, batch_size), valid)

  def model_sums(p, model_state, sets):
    """{name: (summed NLL, correct count)} of one model over every set's batches."""
    def batch_sums(totals, batch):
      x, y, v = batch
      logits = model.apply({"params": p, **(model_state or {})}, normalize(x, mean, std))
      nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=-1)[:, 0]
      return (totals[0] + jnp.sum(nll * v), totals[1] + jnp.sum((jnp.argmax(logits, -1) == y) * v)), None

    zero = jnp.zeros_like(jax.tree.leaves(p)[0], jnp.float32, shape=())  # varies over models like p (shard_map)
    return {name: jax.lax.scan(batch_sums, (zero, zero), batched)[0] for name, batched in sets.items()}

  @jax.jit
  def evaluate(params, images, labels, model_state=None):
    named = isinstance(images, dict)
    images, labels = (images, labels) if named else ({None: images}, {None: labels})
    sets = {name: batches(images[name], labels[name]) for name in images}
    if models_per_vmap <= 0:
      sums = jax.vmap(model_sums, in_axes=(0, 0, None))(params, model_state, sets)
    else:
      sums = jax.lax.map(lambda m: model_sums(*m, sets), (params, model_state), batch_size=models_per_vmap)
    # An empty set scans no batch: 0 / 0 = NaN.
    out = {name: EpochMetrics(loss / labels[name].shape[0], correct / labels[name].shape[0])
           for name, (loss, correct) in sums.items()}
    return out if named else out[None]

  return evaluate
