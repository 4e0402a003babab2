"""Samplers: new latent embeddings drawn from the embeddings [N, D] of a zoo's models.

The samplers of the generative hyper-representations (Schürholt et al., NeurIPS 2022):
a per-dimension Gaussian KDE over all models or over the top 30% by test accuracy
(S_KDE30), neighbourhood sampling in a low-dimensional map of the best models, and a
small GAN; plus a uniform draw in the zoo's bounding box as the baseline. Decoding the
samples to weights is the autoencoder's job; these functions only see arrays.

Every sampler takes an explicit key and is deterministic given it. Fitting (selecting
top models, PCA, GAN training) happens at the edge; sampling is a pure, jitted function.
"""

import functools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

# Generative hyper-representations (2022): KDE bandwidth 0.002, top 30% for S_KDE30; the
# neighbourhood sampler's UMAP map: 15 neighbours, min_dist 0.01, 3-D.
DEFAULT_BANDWIDTH = 0.002
DEFAULT_TOP_FRACTION = 0.3
UMAP_NEIGHBORS, UMAP_MIN_DIST = 15, 0.01


# ----------------------------------------------------------------------------- validation


def _check_embeddings(embeddings, name: str = "embeddings") -> np.ndarray:
  embeddings = np.asarray(embeddings)
  if embeddings.ndim != 2 or embeddings.shape[0] < 1 or embeddings.shape[1] < 1:
    raise ValueError(f"{name} must be a non-empty matrix [N, D], got shape {embeddings.shape}.")
  if not np.all(np.isfinite(embeddings)):
    raise ValueError(
      f"{name} has {int(np.sum(~np.isfinite(embeddings)))} non-finite entries; "
      "drop the diverged models first."
    )
  return embeddings


def _check_scores(scores, num_models: int) -> np.ndarray:
  scores = np.asarray(scores)
  if scores.ndim != 1 or scores.shape[0] != num_models:
    raise ValueError(
      f"scores must have shape [N] = [{num_models}] (one per embedding row), "
      f"got shape {scores.shape}."
    )
  return scores


def _check_num_samples(num_samples) -> int:
  if (
    isinstance(num_samples, bool)
    or not isinstance(num_samples, (int, np.integer))
    or num_samples < 1
  ):
    raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}.")
  return int(num_samples)


def _check_fraction(fraction, name: str) -> float:
  if not isinstance(fraction, (int, float, np.number)) or not 0.0 < fraction <= 1.0:
    raise ValueError(f"{name} must be a number in (0, 1], got {fraction!r}.")
  return float(fraction)


def _check_bandwidth(bandwidth, name: str = "bandwidth") -> float:
  if not isinstance(bandwidth, (int, float, np.number)) or not 0.0 <= bandwidth < math.inf:
    raise ValueError(f"{name} must be a finite number >= 0, got {bandwidth!r}.")
  return float(bandwidth)


# ----------------------------------------------------------------------------- KDE


def select_top(embeddings, scores, fraction: float = DEFAULT_TOP_FRACTION) -> np.ndarray:
  """The embeddings of the best ceil(fraction * N) models by score (e.g. test accuracy).

  Args:
    embeddings: [N, D]. scores: [N], higher is better; NaN scores rank last.
    fraction: in (0, 1]; 0.3 gives the S_KDE30 selection.
  Returns:
    [K, D] numpy rows, best first (ties keep their original order).
  """
  embeddings = _check_embeddings(embeddings)
  scores = _check_scores(scores, embeddings.shape[0])
  fraction = _check_fraction(fraction, "fraction")
  count = max(1, math.ceil(fraction * embeddings.shape[0] - 1e-9))
  # A stable sort of -scores puts the best first and NaN (diverged models) last.
  order = np.argsort(-scores.astype(np.float64), kind="stable")
  return embeddings[order[:count]]


@functools.partial(jax.jit, static_argnames="num_samples")
def _kde(
  key: jax.Array, embeddings: jax.Array, num_samples: int, bandwidth: jax.Array
) -> jax.Array:
  index_key, noise_key = jax.random.split(key)
  num_models, dim = embeddings.shape
  # Each dimension picks its own data point: the dimensions are independent KDEs.
  rows = jax.random.randint(index_key, (num_samples, dim), 0, num_models)
  picked = embeddings[rows, jnp.arange(dim)]
  return picked + bandwidth * jax.random.normal(noise_key, (num_samples, dim), embeddings.dtype)


def kde_sample(
  key: jax.Array, embeddings, num_samples: int, bandwidth: float = DEFAULT_BANDWIDTH
) -> jax.Array:
  """Samples of a per-dimension Gaussian KDE fitted to the embeddings.

  Each latent dimension is its own 1-D KDE (as in the 2022 paper): per sample and per
  dimension, pick a data point's value at random and add N(0, bandwidth^2) noise. The
  marginals follow the data; correlations between dimensions are not kept.

  Args:
    key: PRNG key. embeddings: [N, D]. num_samples: S >= 1. bandwidth: >= 0.
  Returns:
    [S, D] float32.
  """
  return _checked_kde(_kde, key, embeddings, num_samples, bandwidth)


@functools.partial(jax.jit, static_argnames="num_samples")
def _kde_reference(
  key: jax.Array, embeddings: jax.Array, num_samples: int, bandwidth: jax.Array
) -> jax.Array:
  index_key, noise_key = jax.random.split(key)
  rows = jax.random.randint(index_key, (num_samples,), 0, embeddings.shape[0])
  shift = bandwidth * jax.random.normal(noise_key, (num_samples, 1), embeddings.dtype)
  return embeddings[rows] + shift


def kde_reference_sample(
  key: jax.Array, embeddings, num_samples: int, bandwidth: float = DEFAULT_BANDWIDTH
) -> jax.Array:
  """The KDE sampler as the reference code runs it: a whole embedding plus a shared shift.

  The generative hyper-representation code fits sklearn's KernelDensity to each latent
  dimension and samples every dimension with the same random_state, so each dimension picks
  the same data row and adds the same N(0, bandwidth^2) draw: a sample is one data embedding
  moved by one scalar along (1, ..., 1). Unlike `kde_sample`, it keeps each embedding whole.

  Args:
    key: PRNG key. embeddings: [N, D]. num_samples: S >= 1. bandwidth: >= 0.
  Returns:
    [S, D] float32.
  """
  return _checked_kde(_kde_reference, key, embeddings, num_samples, bandwidth)


def _checked_kde(kde, key, embeddings, num_samples, bandwidth) -> jax.Array:
  """Checks the arguments of a KDE sampler, runs it, checks the shape of its [S, D] samples."""
  embeddings = jnp.asarray(_check_embeddings(embeddings), jnp.float32)
  num_samples = _check_num_samples(num_samples)
  samples = kde(key, embeddings, num_samples, jnp.float32(_check_bandwidth(bandwidth)))
  chex.assert_shape(samples, (num_samples, embeddings.shape[1]))
  return samples


# ----------------------------------------------------------------------------- uniform


@functools.partial(jax.jit, static_argnames="num_samples")
def _uniform_in_box(key: jax.Array, low: jax.Array, high: jax.Array, num_samples: int) -> jax.Array:
  return jax.random.uniform(key, (num_samples, low.shape[0]), low.dtype, low, high)


def uniform_sample(key: jax.Array, embeddings, num_samples: int) -> jax.Array:
  """Uniform samples in the bounding box of all embeddings: the baseline sampler.

  Args:
    key: PRNG key. embeddings: [N, D]. num_samples: S >= 1.
  Returns:
    [S, D] float32, each dimension uniform in [min, max) of the data.
  """
  embeddings = jnp.asarray(_check_embeddings(embeddings), jnp.float32)
  num_samples = _check_num_samples(num_samples)
  return _uniform_in_box(key, embeddings.min(axis=0), embeddings.max(axis=0), num_samples)


def uniform_reference_sample(key: jax.Array, dim: int, num_samples: int) -> jax.Array:
  """U(-1, 1)^dim: the reference code's uniform baseline, blind to where the zoo lies. [S, dim]."""
  num_samples = _check_num_samples(num_samples)
  low = -jnp.ones((int(dim),), jnp.float32)
  return _uniform_in_box(key, low, -low, num_samples)


# ----------------------------------------------------------------------------- neighbourhood


class Neighbourhood(NamedTuple):
  """A linear map to a low-dimensional space and a box of good models in it.

  forward(x) = (x - mean) @ components.T; inverse(z) = z @ components + mean (PCA).
  """

  mean: jax.Array  # [D] centre of the fitted embeddings
  components: jax.Array  # [dims, D] orthonormal principal axes
  low: jax.Array  # [dims] lower corner of the top models' box in the map
  high: jax.Array  # [dims] upper corner


def neighbourhood_forward(fitted: Neighbourhood, embeddings: jax.Array) -> jax.Array:
  """Embeddings [..., D] to map coordinates [..., dims]."""
  return (embeddings - fitted.mean) @ fitted.components.T


def neighbourhood_inverse(fitted: Neighbourhood, coords: jax.Array) -> jax.Array:
  """Map coordinates [..., dims] back to embeddings [..., D] (in the PCA subspace)."""
  return coords @ fitted.components + fitted.mean


def fit_neighbourhood(
  embeddings, scores, *, dims: int = 3, top_fraction: float = DEFAULT_TOP_FRACTION
) -> Neighbourhood:
  """Fits the map on all embeddings and the box around the top models in it.

  The 2022 paper used a 3-D UMAP (n_neighbors 15, min_dist 0.01) and its approximate
  inverse; UMAP is not a dependency here, so this uses PCA (scikit-learn) to `dims`
  dimensions, whose inverse is exact up to the discarded directions: samples lie in the
  affine subspace through the zoo's mean spanned by its top `dims` principal axes.

  Args:
    embeddings: [N, D]. scores: [N], higher is better.
    dims: map dimension, 1 <= dims <= min(N, D). top_fraction: in (0, 1].
  Returns:
    A `Neighbourhood` of float32 arrays, for `neighbourhood_sample`.
  """
  from sklearn.decomposition import PCA  # imported here: only this sampler needs it

  embeddings = _check_embeddings(embeddings)
  top = select_top(embeddings, scores, _check_fraction(top_fraction, "top_fraction"))
  limit = min(embeddings.shape)
  if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or not 1 <= dims <= limit:
    raise ValueError(f"dims must be an integer in [1, min(N, D)] = [1, {limit}], got {dims!r}.")
  pca = PCA(n_components=int(dims), svd_solver="full").fit(embeddings.astype(np.float64))
  coords = pca.transform(top.astype(np.float64))
  as_f32 = lambda x: jnp.asarray(x, jnp.float32)
  return Neighbourhood(
    mean=as_f32(pca.mean_),
    components=as_f32(pca.components_),
    low=as_f32(coords.min(axis=0)),
    high=as_f32(coords.max(axis=0)),
  )


@functools.partial(jax.jit, static_argnames="num_samples")
def _neighbourhood(key: jax.Array, fitted: Neighbourhood, num_samples: int) -> jax.Array:
  coords = _uniform_in_box(key, fitted.low, fitted.high, num_samples)
  return neighbourhood_inverse(fitted, coords)


def neighbourhood_sample(key: jax.Array, fitted: Neighbourhood, num_samples: int) -> jax.Array:
  """Uniform draws in the top models' box of the map, mapped back: [S, D] float32."""
  return _neighbourhood(key, fitted, _check_num_samples(num_samples))


def umap_neighbourhood_sample(
  key: jax.Array,
  embeddings,
  scores,
  num_samples: int,
  *,
  top_fraction: float = DEFAULT_TOP_FRACTION,
  dims: int = 3,
  n_neighbors: int = UMAP_NEIGHBORS,
  min_dist: float = UMAP_MIN_DIST,
) -> jax.Array:
  """The reference neighbourhood sampler: UMAP of the top models, uniform in its box, inverted.

  UMAP (umap-learn; n_neighbors 15, min_dist 0.01, 3-D as published) is fitted on the top
  `top_fraction` embeddings; draws are uniform in the bounding box of their map and go back
  through UMAP's inverse transform (an interpolation between nearby top embeddings). The
  key seeds both UMAP and the draws.

  Returns:
    [S, D] float32.
  """
  import umap  # imported here: only this sampler needs it, and it is slow to import

  top = select_top(embeddings, scores, _check_fraction(top_fraction, "top_fraction")).astype(
    np.float64
  )
  num_samples = _check_num_samples(num_samples)
  if top.shape[0] < dims + 2:
    raise ValueError(
      f"The UMAP neighbourhood needs at least {dims + 2} top embeddings, got {top.shape[0]}; "
      "raise top_fraction or give more models."
    )
  seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
  fitted = umap.UMAP(
    n_neighbors=min(int(n_neighbors), top.shape[0] - 1),
    min_dist=float(min_dist),
    n_components=int(dims),
    random_state=seed,
    init="random",
  ).fit(top)
  coords = fitted.embedding_
  draws = np.random.default_rng(seed).uniform(
    coords.min(axis=0), coords.max(axis=0), (num_samples, int(dims))
  )
  return jnp.asarray(fitted.inverse_transform(draws), jnp.float32)


# ----------------------------------------------------------------------------- GAN


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
  embeddings = _check_embeddings(embeddings).astype(np.float32)
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
  samples = _gan(key, generator, _check_num_samples(num_samples))
  chex.assert_shape(samples, (num_samples, generator.mean.shape[0]))
  return samples


# ----------------------------------------------------------------------------- registry

# Fields `draw` reads from its config, with their defaults.
DRAW_DEFAULTS = {
  "bandwidth": DEFAULT_BANDWIDTH,
  "top_fraction": DEFAULT_TOP_FRACTION,
  "dims": 3,
  "gan_size": "default",
  "gan": {},
  "umap_neighbors": UMAP_NEIGHBORS,
  "umap_min_dist": UMAP_MIN_DIST,
}

# name -> draw(key, embeddings [N, D], scores [N], num_samples, config) -> [S, D]. A sampler is one
# function here and its name; config is DRAW_DEFAULTS completed by the caller's fields.
_REGISTRY = {
  "kde": lambda key, z, scores, n, c: kde_sample(key, z, n, c["bandwidth"]),
  "kde30": lambda key, z, scores, n, c: kde_sample(
    key, select_top(z, scores, c["top_fraction"]), n, c["bandwidth"]
  ),
  "kde30_reference": lambda key, z, scores, n, c: kde_reference_sample(
    key, select_top(z, scores, c["top_fraction"]), n, c["bandwidth"]
  ),
  "neighbourhood": lambda key, z, scores, n, c: neighbourhood_sample(
    key, fit_neighbourhood(z, scores, dims=c["dims"], top_fraction=c["top_fraction"]), n
  ),
  "neighbourhood_umap": lambda key, z, scores, n, c: umap_neighbourhood_sample(
    key,
    z,
    scores,
    n,
    top_fraction=c["top_fraction"],
    dims=c["dims"],
    n_neighbors=c["umap_neighbors"],
    min_dist=c["umap_min_dist"],
  ),
  "gan": lambda key, z, scores, n, c: _draw_gan(key, z, n, c),
  "uniform": lambda key, z, scores, n, c: uniform_sample(key, z, n),
  "uniform_reference": lambda key, z, scores, n, c: uniform_reference_sample(key, z.shape[1], n),
}


def _sampler_files() -> None:
  """Adds the samplers of zoo_jax/samplers/ to the registry: each file there is one sampler, named
  for the file, exposing `draw(key, embeddings [N, D], scores [N], num_samples, config) -> [S, D]`
  and `DEFAULTS` (its config fields with their defaults, added to DRAW_DEFAULTS). A new sampler
  is a new file there plus a config naming it in config.samplers."""
  import importlib
  import pkgutil
  from zoo_jax import samplers

  for info in pkgutil.iter_modules(samplers.__path__):
    if info.name.startswith("_"):
      continue
    module = importlib.import_module(f"{samplers.__name__}.{info.name}")
    clash = set(module.DEFAULTS) & set(DRAW_DEFAULTS)
    if info.name in _REGISTRY or clash:
      raise ValueError(
        f"zoo_jax/samplers/{info.name}.py: the name or config fields {sorted(clash)} are taken."
      )
    _REGISTRY[info.name] = module.draw
    DRAW_DEFAULTS.update(module.DEFAULTS)


_sampler_files()
SAMPLERS = tuple(_REGISTRY)


def _draw_gan(key, embeddings, num_samples, config):
  train_key, sample_key = jax.random.split(key)
  generator, _ = train_gan(train_key, embeddings, size=config["gan_size"], **dict(config["gan"]))
  return gan_sample(sample_key, generator, num_samples)


def draw(
  name: str,
  key: jax.Array,
  embeddings,
  scores,
  num_samples: int,
  config: Mapping[str, Any] | None = None,
) -> jax.Array:
  """Draws [S, D] embeddings with the named sampler (one of SAMPLERS).

  Args:
    name: "kde" (per-dimension KDE, all models), "kde30" (the same on the top `top_fraction`),
      "kde30_reference" (the reference code's KDE30: whole top embeddings plus a shared shift),
      "neighbourhood" (PCA map), "neighbourhood_umap" (the reference UMAP map), "gan",
      "uniform" (the zoo's bounding box), "uniform_reference" (U(-1, 1)^D).
    key: PRNG key. embeddings: [N, D]. scores: [N] (e.g. test accuracy), higher is better.
    num_samples: S >= 1.
    config: optional mapping (dict or ConfigDict) with any of DRAW_DEFAULTS' fields:
      bandwidth, top_fraction, dims, gan_size, gan (GANConfig overrides), umap_neighbors,
      umap_min_dist.
  """
  if name not in _REGISTRY:
    raise ValueError(f"sampler {name!r} is unknown; allowed values: {list(SAMPLERS)}.")
  config = dict(config or {})
  unknown = set(config) - set(DRAW_DEFAULTS)
  if unknown:
    raise ValueError(
      f"Unknown sampler config fields {sorted(unknown)}; allowed: {list(DRAW_DEFAULTS)}."
    )
  config = {**DRAW_DEFAULTS, **config}
  embeddings = _check_embeddings(embeddings)
  scores = _check_scores(scores, embeddings.shape[0])
  num_samples = _check_num_samples(num_samples)
  _check_fraction(config["top_fraction"], "config.top_fraction")
  _check_bandwidth(config["bandwidth"], "config.bandwidth")
  return _REGISTRY[name](key, embeddings, scores, num_samples, config)
