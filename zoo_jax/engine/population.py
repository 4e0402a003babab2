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
LR_SCHEDULES = ("constant", "onecycle")

# Streams derived from a model's seed: fold_in(key(seed), stream). (2: zoo_jax.sparsify.)
_INIT_STREAM, _TRAIN_STREAM, _AUGMENT_STREAM = 0, 1, 3


class Schedule(NamedTuple):
  """How the learning rate (and momentum) move over a run: "constant", or "onecycle" over
  `total_steps` optimizer steps (the run's epochs x steps per epoch)."""

  name: str = "constant"
  total_steps: int = 0


class Augment(NamedTuple):
  """Train-time augmentation of each image, drawn per model, step and image, on the raw pixels
  (before normalisation, so padding and rotation fill with pixel value 0, as torchvision's
  transforms placed before ToTensor / Normalize do). The default does nothing."""

  crop_padding: int = (
    0  # RandomCrop(size, padding=p): zero-pad p on each side, crop back at a random offset
  )
  horizontal_flip: bool = False  # RandomHorizontalFlip(): mirrored with probability 1/2
  rotation: float = (
    0.0  # RandomRotation(r): an angle uniform in [-r, r] degrees, nearest pixel, fill 0
  )

  @property
  def active(self) -> bool:
    return bool(self.crop_padding or self.horizontal_flip or self.rotation)


# torch.optim.lr_scheduler.OneCycleLR's defaults (the Model Zoos' ResNet-18 zoos pass only max_lr,
# epochs and steps_per_epoch).
ONECYCLE = dict(
  pct_start=0.3, div_factor=25.0, final_div_factor=1e4, base_momentum=0.85, max_momentum=0.95
)


def onecycle(step: jax.Array, total_steps: int) -> tuple[jax.Array, jax.Array]:
  """(learning-rate factor of max_lr, momentum) at optimizer step `step` (0-based), exactly as
  PyTorch's OneCycleLR (two phases, cosine annealing, cycle_momentum=True) computes them.

  lr rises from max_lr / 25 to max_lr at step 0.3 * total - 1, then falls to max_lr / 25 / 1e4 at
  step total - 1; the momentum (SGD's momentum, Adam's beta1) falls from 0.95 to 0.85 and rises back.
  Steps past the end keep the final values (PyTorch raises there).
  """
  o = ONECYCLE
  initial = 1.0 / o["div_factor"]
  final = initial / o["final_div_factor"]
  step = jnp.asarray(step, jnp.float32)
  first_end = float(o["pct_start"] * total_steps) - 1.0
  last_end = float(total_steps) - 1.0
  in_first = step <= first_end
  pct = jnp.where(in_first, step / first_end, (step - first_end) / (last_end - first_end))
  pct = jnp.clip(pct, 0.0, 1.0)
  anneal = lambda start, end: end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1.0)
  lr = jnp.where(in_first, anneal(initial, 1.0), anneal(1.0, final))
  momentum = jnp.where(
    in_first,
    anneal(o["max_momentum"], o["base_momentum"]),
    anneal(o["base_momentum"], o["max_momentum"]),
  )
  return lr, momentum


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


def make_model(
  cohort: Cohort, num_classes: int = 10, init: str = "uniform", conv_impl: str = "xla"
) -> nn.Module:
  """The Flax module of a cohort (the single definition of its function).

  conv_impl: how its convolutions and max-pools are computed, "xla", "patches" or "taps"
    (models.fast_conv); the same function and parameters either way.
  """
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"Unknown conv_impl {conv_impl!r}; allowed values: {list(CONV_IMPLS)}.")
  return models.get_model(
    cohort.arch,
    activation=cohort.activation,
    init=init,
    use_dropout=cohort.use_dropout,
    num_classes=num_classes,
    conv_impl=conv_impl,
  )


def make_optimizer(
  name: str, schedule: Schedule = Schedule()
) -> Callable[..., optax.GradientTransformation]:
  """Optimizer factory `(learning_rate, weight_decay) -> tx` with injectable hyperparameters.

  Weight decay is L2 added to the gradient before the update, as PyTorch's
  `Adam(weight_decay=...)` and `SGD(weight_decay=...)` used by the Model Zoos do.
  schedule "onecycle": `learning_rate` is OneCycleLR's max_lr; the step's learning rate and
  momentum (SGD's, Adam's beta1) follow `onecycle`, as PyTorch's scheduler sets them before each step.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"Unknown optimizer {name!r}; allowed values: {list(OPTIMIZERS)}.")
  if schedule.name not in LR_SCHEDULES:
    raise ValueError(
      f"Unknown learning-rate schedule {schedule.name!r}; allowed values: {list(LR_SCHEDULES)}."
    )

  def tx(learning_rate, weight_decay):
    if schedule.name == "constant":
      base = (
        optax.adam(learning_rate)
        if name == "adam"
        else optax.sgd(learning_rate, momentum=SGD_MOMENTUM)
      )
    else:
      lr = lambda count: learning_rate * onecycle(count, schedule.total_steps)[0]
      momentum = lambda count: onecycle(count, schedule.total_steps)[1]
      base = (
        optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=momentum)
        if name == "adam"
        else optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=momentum)
      )
    return optax.chain(optax.add_decayed_weights(weight_decay), base)

  return optax.inject_hyperparams(tx)


def augment_images(key: jax.Array, images: jax.Array, augment: Augment) -> jax.Array:
  """One model's batch [B, H, W, C] of raw pixels (any dtype) -> float32, each image augmented
  with its own key from `key`: crop (with padding), then flip, then rotation."""
  x = images.astype(jnp.float32)
  if not augment.active:
    return x
  h, w, c = x.shape[1:]

  def one(key, image):
    crop_key, flip_key, angle_key = jax.random.split(key, 3)
    p = augment.crop_padding
    if p:
      padded = jnp.pad(image, ((p, p), (p, p), (0, 0)))
      dy, dx = jax.random.randint(crop_key, (2,), 0, 2 * p + 1)
      image = jax.lax.dynamic_slice(padded, (dy, dx, 0), (h, w, c))
    if augment.horizontal_flip:
      image = jnp.where(jax.random.bernoulli(flip_key), image[:, ::-1], image)
    if augment.rotation:
      angle = jnp.deg2rad(
        jax.random.uniform(angle_key, (), minval=-augment.rotation, maxval=augment.rotation)
      )
      cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
      y, x_ = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32) - cy, jnp.arange(w, dtype=jnp.float32) - cx, indexing="ij"
      )
      # Each output pixel takes the nearest source pixel of the inverse rotation; outside: 0.
      sy = jnp.round(jnp.cos(angle) * y - jnp.sin(angle) * x_ + cy).astype(jnp.int32)
      sx = jnp.round(jnp.sin(angle) * y + jnp.cos(angle) * x_ + cx).astype(jnp.int32)
      inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
      image = jnp.where(
        inside[..., None], image[jnp.clip(sy, 0, h - 1), jnp.clip(sx, 0, w - 1)], 0.0
      )
    return image

  return jax.vmap(one)(jax.random.split(key, x.shape[0]), x)


def init_params(
  cohort: Cohort,
  seeds: np.ndarray,
  inits: np.ndarray,
  input_shape: tuple[int, int, int],
  num_classes: int = 10,
) -> Any:
  """Initial weights [P, ...] of P models, model i from (seeds[i], inits[i]) alone."""
  return init_variables(cohort, seeds, inits, input_shape, num_classes)[0]


def init_variables(
  cohort: Cohort,
  seeds: np.ndarray,
  inits: np.ndarray,
  input_shape: tuple[int, int, int],
  num_classes: int = 10,
) -> tuple[Any, Any]:
  """(params, model_state) [P, ...] of P models: the weights, and the mutable collections
  ({"batch_stats": ...} for BatchNorm models; None when the model has none)."""
  seeds, inits = np.asarray(seeds), np.asarray(inits)
  chex.assert_equal_shape([seeds, inits])
  dummy = jnp.zeros((1,) + tuple(input_shape))
  groups = []
  for init in dict.fromkeys(inits.tolist()):  # one vmapped init per method, in first-seen order
    model = make_model(cohort, num_classes, init)
    init_one = lambda seed: model.init(
      jax.random.fold_in(jax.random.key(seed), _INIT_STREAM), dummy
    )
    index = np.flatnonzero(inits == init)
    groups.append((index, jax.jit(jax.vmap(init_one))(jnp.asarray(seeds[index], jnp.int32))))
  order = np.argsort(np.concatenate([index for index, _ in groups]), kind="stable")
  variables = jax.tree.map(lambda *xs: jnp.concatenate(xs)[order], *[v for _, v in groups])
  params = variables.pop("params")
  return params, (dict(variables) or None)


def create_population(
  cohort: Cohort,
  seeds: np.ndarray,
  inits: np.ndarray,
  learning_rate: np.ndarray,
  weight_decay: np.ndarray,
  dropout_rate: np.ndarray,
  input_shape: tuple[int, int, int],
  num_classes: int = 10,
  params: Any = None,
  schedule: Schedule = Schedule(),
) -> PopulationState:
  """Creates the training state of P models of one cohort.

  Args:
    seeds, inits, learning_rate, weight_decay, dropout_rate: [P] per-model values.
    input_shape: (H, W, C) of one image.
    params: optional starting weights [P, ...] (e.g. sampled ones); by default each
      model's init method drawn from its own seed.
    schedule: the learning-rate schedule (the optimizer state holds its step count); the same
      as make_train_epoch's.
  """
  seeds = np.asarray(seeds)
  (p,) = seeds.shape
  hparams = [jnp.asarray(v, jnp.float32) for v in (learning_rate, weight_decay, dropout_rate)]
  chex.assert_shape(hparams, (p,))
  initial_params, model_state = init_variables(cohort, seeds, inits, input_shape, num_classes)
  if params is None:
    params = initial_params
  make_tx = make_optimizer(cohort.optimizer, schedule)
  opt_state = jax.jit(
    jax.vmap(lambda p, lr, wd: make_tx(learning_rate=lr, weight_decay=wd).init(p))
  )(params, hparams[0], hparams[1])
  seeds = jnp.asarray(seeds, jnp.int32)
  return PopulationState(
    params=params,
    opt_state=opt_state,
    seed=seeds,
    dropout_rate=hparams[2],
    diverged=jnp.zeros((p,), bool),
    epoch=jnp.zeros((p,), jnp.int32),
    model_state=model_state,
  )


def normalize(images: jax.Array, mean, std) -> jax.Array:
  """uint8 NHWC -> float32, scaled to [0, 1] then standardised per channel."""
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean NLL of log-softmax (the zoo's loss), for one model's batch."""
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1))


def _tree_all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def make_train_epoch(
  cohort: Cohort,
  *,
  batch_size: int,
  num_train: int,
  mean,
  std,
  num_classes: int = 10,
  models_per_vmap: int = 0,
  conv_impl: str = "xla",
  schedule: Schedule = Schedule(),
  augment: Augment = Augment(),
) -> Callable[[PopulationState, jax.Array, jax.Array], tuple[PopulationState, EpochMetrics]]:
  """Builds the jitted `train_epoch(state, images, labels) -> (state, metrics)`.

  `images` uint8 [N, H, W, C] and `labels` int32 [N] are the whole training set, on the
  device and shared by the cohort. Each model draws its own permutation of them from
  (seed, epoch); the last incomplete batch is dropped. Metrics are per model [P].

  models_per_vmap: 0 vmaps the whole cohort (the accelerator choice); k > 0 vmaps k models
    at a time and runs the chunks one after another with `lax.map`, inside the same jitted
    call. On CPU, vmapped convolutions become grouped convolutions whose gradients XLA runs
    slowly, so k = 1 is several times faster there at P >= 16 (benchmarks/population_throughput.py).
  conv_impl: "xla", "patches" or "taps" (see make_model); the last two turn vmapped
    convolutions into batched matmuls, the fast form on CPU.
  schedule: the learning-rate schedule (as given to create_population).
  augment: train-time augmentation; model i's draws come from its seed and the epoch (a stream
    of their own), so they do not depend on its position in the cohort.
  """
  model, make_tx = (
    make_model(cohort, num_classes, conv_impl=conv_impl),
    make_optimizer(cohort.optimizer, schedule),
  )
  tx = make_tx(learning_rate=0.0, weight_decay=0.0)  # the real values live in each opt_state
  steps = num_train // batch_size
  if steps < 1:
    raise ValueError(
      f"batch_size={batch_size} is larger than the training set ({num_train} images)."
    )

  def model_epoch(
    params, opt_state, seed, dropout_rate, diverged, epoch, model_state, images, labels
  ):
    epoch_key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _TRAIN_STREAM), epoch)
    perm_key, dropout_key = jax.random.split(epoch_key)
    augment_key = jax.random.fold_in(
      jax.random.fold_in(jax.random.key(seed), _AUGMENT_STREAM), epoch
    )
    order = jax.random.permutation(perm_key, num_train)[: steps * batch_size].reshape(
      steps, batch_size
    )

    def loss_fn(p, model_state, x, y, key):
      key = key if cohort.use_dropout else None
      if model_state is None:
        logits = model.apply({"params": p}, x, dropout_rate, key)
      else:  # BatchNorm: batch statistics, and the running ones updated
        logits, model_state = model.apply(
          {"params": p, **model_state}, x, dropout_rate, key, train=True, mutable=list(model_state)
        )
      return cross_entropy(logits, y), (jnp.mean(jnp.argmax(logits, -1) == y), model_state)

    def step(carry, inputs):
      params, opt_state, model_state, diverged = carry
      idx, i = inputs
      x = (
        augment_images(jax.random.fold_in(augment_key, i), images[idx], augment)
        if augment.active
        else images[idx]
      )
      x, y = normalize(x, mean, std), labels[idx]
      (loss, (acc, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, model_state, x, y, jax.random.fold_in(dropout_key, i)
      )
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
      step, (params, opt_state, model_state, diverged), (order, jnp.arange(steps))
    )
    return params, opt_state, model_state, diverged, jnp.mean(losses), jnp.mean(accs)

  def population_epoch(
    params, opt_state, seed, dropout_rate, diverged, epoch, model_state, images, labels
  ):
    per_model = (params, opt_state, seed, dropout_rate, diverged, epoch, model_state)
    if models_per_vmap <= 0:
      return jax.vmap(model_epoch, in_axes=(0,) * 7 + (None, None))(*per_model, images, labels)
    return jax.lax.map(
      lambda m: model_epoch(*m, images, labels), per_model, batch_size=models_per_vmap
    )

  @jax.jit
  def train_epoch(state: PopulationState, images: jax.Array, labels: jax.Array):
    params, opt_state, model_state, diverged, loss, acc = population_epoch(
      state.params,
      state.opt_state,
      state.seed,
      state.dropout_rate,
      state.diverged,
      state.epoch,
      state.model_state,
      images,
      labels,
    )
    loss = jnp.where(diverged, jnp.nan, loss)
    acc = jnp.where(diverged, jnp.nan, acc)
    state = state.replace(
      params=params,
      opt_state=opt_state,
      diverged=diverged,
      epoch=state.epoch + 1,
      model_state=model_state,
    )
    return state, EpochMetrics(loss, acc)

  return train_epoch


def make_evaluate(
  cohort: Cohort,
  *,
  batch_size: int,
  mean,
  std,
  num_classes: int = 10,
  models_per_vmap: int = 0,
  conv_impl: str = "xla",
) -> Callable[..., Any]:
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
    return (
      images.reshape((count, batch_size) + images.shape[1:]),
      jnp.pad(labels, (0, pad)).reshape(count, batch_size),
      valid,
    )

  def model_sums(p, model_state, sets):
    """{name: (summed NLL, correct count)} of one model over every set's batches."""

    def batch_sums(totals, batch):
      x, y, v = batch
      logits = model.apply({"params": p, **(model_state or {})}, normalize(x, mean, std))
      nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=-1)[:, 0]
      return (
        totals[0] + jnp.sum(nll * v),
        totals[1] + jnp.sum((jnp.argmax(logits, -1) == y) * v),
      ), None

    zero = jnp.zeros_like(
      jax.tree.leaves(p)[0], jnp.float32, shape=()
    )  # varies over models like p (shard_map)
    return {
      name: jax.lax.scan(batch_sums, (zero, zero), batched)[0] for name, batched in sets.items()
    }

  @jax.jit
  def evaluate(params, images, labels, model_state=None):
    named = isinstance(images, dict)
    images, labels = (images, labels) if named else ({None: images}, {None: labels})
    sets = {name: batches(images[name], labels[name]) for name in images}
    if models_per_vmap <= 0:
      sums = jax.vmap(model_sums, in_axes=(0, 0, None))(params, model_state, sets)
    else:
      sums = jax.lax.map(
        lambda m: model_sums(*m, sets), (params, model_state), batch_size=models_per_vmap
      )
    # An empty set scans no batch: 0 / 0 = NaN.
    out = {
      name: EpochMetrics(loss / labels[name].shape[0], correct / labels[name].shape[0])
      for name, (loss, correct) in sums.items()
    }
    return out if named else out[None]

  return evaluate
