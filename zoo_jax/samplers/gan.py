"""Sampler "gan": a small GAN trained on the embeddings, then sampled (train_gan, gan_sample).

Generator and discriminator are MLPs; the data are standardised per dimension for training and
the samples scaled back.
"""

import functools
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from zoo_jax.samplers import _checks

DEFAULTS = {"gan_size": "default", "gan": {}}  # a key of GAN_SIZES; GANConfig overrides


class GANConfig(NamedTuple):
  """A GAN over embeddings: generator and discriminator are MLPs of the same width."""

  noise_dim: int = 64  # dimension of the generator's Gaussian input
  hidden: int = 256  # width of each hidden layer
  num_layers: int = 3  # hidden layers per network
  steps: int = 5000  # discriminator + generator updates
  batch_size: int = 128
  learning_rate: float = 2e-4  # peak of a cosine decay; Adam with b1 = 0.5 (the DCGAN setting)


GAN_SIZES = {
  # Fits a 2-D Gaussian mixture in ~1000 steps (a few seconds on CPU); see the tests.
  "small": GANConfig(
    noise_dim=8, hidden=64, num_layers=2, steps=1000, batch_size=256, learning_rate=2e-3
  ),
  "default": GANConfig(),
}


def make_gan_config(size: str = "default", **overrides) -> GANConfig:
  """A GANConfig of a named size with fields overridden; errors name the bad field."""
  if size not in GAN_SIZES:
    raise ValueError(f"GAN size {size!r} is unknown; allowed values: {list(GAN_SIZES)}.")
  unknown = set(overrides) - set(GANConfig._fields)
  if unknown:
    raise ValueError(
      f"Unknown GAN config fields {sorted(unknown)}; allowed: {list(GANConfig._fields)}."
    )
  config = GAN_SIZES[size]._replace(**overrides)
  for field in ("noise_dim", "hidden", "num_layers", "batch_size"):
    value = getattr(config, field)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"GAN config {field} must be an integer >= 1, got {value!r}.")
  if (
    isinstance(config.steps, bool)
    or not isinstance(config.steps, (int, np.integer))
    or config.steps < 0
  ):
    raise ValueError(f"GAN config steps must be an integer >= 0, got {config.steps!r}.")
  if not isinstance(config.learning_rate, (int, float, np.number)) or not config.learning_rate > 0:
    raise ValueError(
      f"GAN config learning_rate must be a number > 0, got {config.learning_rate!r}."
    )
  return config


class _MLP(nn.Module):
  """Hidden layers of leaky ReLU, then a linear output."""

  hidden: int
  num_layers: int
  out: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for _ in range(self.num_layers):
      x = nn.leaky_relu(nn.Dense(self.hidden)(x), 0.2)
    return nn.Dense(self.out)(x)


@flax.struct.dataclass
class GANGenerator:
  """A trained generator and the standardisation of the data it was trained on."""

  params: Any  # the generator MLP's parameters
  mean: jax.Array  # [D] data mean, added back to samples
  std: jax.Array  # [D] data std, multiplied back
  noise_dim: int = flax.struct.field(pytree_node=False)
  hidden: int = flax.struct.field(pytree_node=False)
  num_layers: int = flax.struct.field(pytree_node=False)

  @property
  def module(self) -> _MLP:
    return _MLP(self.hidden, self.num_layers, self.mean.shape[0])


class _GANTrainState(NamedTuple):
  gen: Any
  disc: Any
  gen_opt: Any
  disc_opt: Any


@functools.lru_cache(maxsize=16)
def _make_gan_step(config: GANConfig, dim: int):
  """Jitted (init, update): an update is a discriminator then a generator step on one batch.

  Cached per (config, dim) so that training a GAN again does not compile again.
  """
  gen = _MLP(config.hidden, config.num_layers, dim)
  disc = _MLP(config.hidden, config.num_layers, 1)
  # Cosine decay to zero: GAN iterates oscillate, a vanishing step size settles the last one.
  schedule = optax.cosine_decay_schedule(config.learning_rate, max(config.steps, 1))
  optimizer = optax.adam(schedule, b1=0.5)

  def disc_loss(disc_params, real, fake):
    real_logits = disc.apply(disc_params, real)
    fake_logits = disc.apply(disc_params, fake)
    return (
      optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits)).mean()
      + optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits)).mean()
    )

  def gen_loss(gen_params, disc_params, noise):
    logits = disc.apply(disc_params, gen.apply(gen_params, noise))
    # Non-saturating generator loss (Goodfellow et al., 2014): -log D(G(z)).
    return optax.sigmoid_binary_cross_entropy(logits, jnp.ones_like(logits)).mean()

  @jax.jit
  def step(state: _GANTrainState, data: jax.Array, key: jax.Array):
    batch_key, disc_noise_key, gen_noise_key = jax.random.split(key, 3)
    real = data[jax.random.randint(batch_key, (config.batch_size,), 0, data.shape[0])]
    noise_shape = (config.batch_size, config.noise_dim)
    fake = gen.apply(state.gen, jax.random.normal(disc_noise_key, noise_shape))
    d_loss, d_grads = jax.value_and_grad(disc_loss)(state.disc, real, jax.lax.stop_gradient(fake))
    d_updates, disc_opt = optimizer.update(d_grads, state.disc_opt, state.disc)
    disc_params = optax.apply_updates(state.disc, d_updates)
    g_loss, g_grads = jax.value_and_grad(gen_loss)(
      state.gen, disc_params, jax.random.normal(gen_noise_key, noise_shape)
    )
    g_updates, gen_opt = optimizer.update(g_grads, state.gen_opt, state.gen)
    new = _GANTrainState(optax.apply_updates(state.gen, g_updates), disc_params, gen_opt, disc_opt)
    return new, {"disc_loss": d_loss, "gen_loss": g_loss}

  @jax.jit
  def init(key: jax.Array) -> _GANTrainState:
    gen_key, disc_key = jax.random.split(key)
    gen_params = gen.init(gen_key, jnp.zeros((1, config.noise_dim)))
    disc_params = disc.init(disc_key, jnp.zeros((1, dim)))
    return _GANTrainState(
      gen_params, disc_params, optimizer.init(gen_params), optimizer.init(disc_params)
    )

  return init, step


def train_gan(
  key: jax.Array, embeddings, *, size: str = "default", progress_bar: bool = False, **overrides
) -> tuple[GANGenerator, dict[str, np.ndarray]]:
  """Trains a GAN on the embeddings (standardised per dimension inside).

  Args:
    key: PRNG key (init, batches and noise all derive from it).
    embeddings: [N, D]. size: a key of GAN_SIZES. progress_bar: show a tqdm bar.
    **overrides: GANConfig fields (noise_dim, hidden, num_layers, steps, batch_size,
      learning_rate).
  Returns:
    (generator for `gan_sample`, {"disc_loss": [steps], "gen_loss": [steps]}).
  """
  embeddings = _checks.check_embeddings(embeddings).astype(np.float32)
  config = make_gan_config(size, **overrides)
  mean = embeddings.mean(axis=0)
  # Constant dimensions keep std 1 so that standardising never divides by zero.
  std = np.where(embeddings.std(axis=0) > 0, embeddings.std(axis=0), 1.0).astype(np.float32)
  data = jnp.asarray((embeddings - mean) / std)
  init_key, train_key = jax.random.split(key)
  init, step = _make_gan_step(config, data.shape[1])
  state = init(init_key)
  steps = range(config.steps)
  if progress_bar:
    from tqdm.auto import tqdm

    steps = tqdm(steps, unit="step", desc="GAN")
  history = []
  for i in steps:
    state, metrics = step(state, data, jax.random.fold_in(train_key, i))
    history.append(metrics)
  info = {
    name: np.asarray([float(m[name]) for m in history], np.float32)
    for name in ("disc_loss", "gen_loss")
  }
  generator = GANGenerator(
    params=state.gen,
    mean=jnp.asarray(mean),
    std=jnp.asarray(std),
    noise_dim=config.noise_dim,
    hidden=config.hidden,
    num_layers=config.num_layers,
  )
  return generator, info


@functools.partial(jax.jit, static_argnames="num_samples")
def _gan(key: jax.Array, generator: GANGenerator, num_samples: int) -> jax.Array:
  noise = jax.random.normal(key, (num_samples, generator.noise_dim))
  return generator.module.apply(generator.params, noise) * generator.std + generator.mean


def gan_sample(key: jax.Array, generator: GANGenerator, num_samples: int) -> jax.Array:
  """Samples of a trained generator, in the embeddings' original scale: [S, D] float32."""
  samples = _gan(key, generator, _checks.check_num_samples(num_samples))
  chex.assert_shape(samples, (num_samples, generator.mean.shape[0]))
  return samples


def draw(key: jax.Array, embeddings, scores, num_samples: int, config) -> jax.Array:
  """[S, D] samples of a GAN trained on embeddings [N, D] (scores [N] unused); the key seeds both."""
  del scores
  train_key, sample_key = jax.random.split(key)
  generator, _ = train_gan(train_key, embeddings, size=config["gan_size"], **dict(config["gan"]))
  return gan_sample(sample_key, generator, num_samples)
