"""Hyper-representations: a transformer autoencoder over neuron tokens (Schürholt et al., 2021/2022).

Each model becomes T neuron tokens of width d (`weights.tokenize`). The encoder embeds the
tokens, adds learned layer and position-in-layer embeddings, prepends a learned compression
token, runs pre-LN transformer blocks and reads the latent z off the compression token. The
decoder maps z back to T token slots and on to token values, so a decoded embedding is a
model's weights. Training mixes layer-wise normalised reconstruction with SimCLR's NT-Xent on
two augmented views (hidden-unit permutation, noise, random erasing) of each model:

    loss = gamma * contrastive + (1 - gamma) * reconstruction

Everything is pure functions over pytrees: `HyperRep` is used through init/apply, and the
`make_*` builders return jitted functions of (params, arrays).
"""

import dataclasses
import functools
import json
import os
from typing import Any, Callable

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from zoo_jax import weights
from zoo_jax import zoo as zoo_lib
from zoo_jax.weights.spec import WeightSpec
from zoo_jax.weights.tokens import Tokens
from zoo_jax.encoders import methods, streaming, training

# The published setting (Schürholt et al., 2021/2022; see RESEARCH.md): 4 blocks, 4 heads,
# embedding 512, latent 700 for MNIST CNN-s, Adam lr 1e-4, NT-Xent temperature 0.1,
# gamma 0.5, random erasing with probability 0.5.
D_MODEL, NUM_HEADS, NUM_BLOCKS, LATENT_DIM = 512, 4, 4, 700
BOTTLENECKS = ("token", "flatten")
LEARNING_RATE, TEMPERATURE, GAMMA = 1e-4, 0.1, 0.5
ERASE_P = weights.augment.ERASE_PROBABILITY
# Additive noise on the (un-normalised) weights: our choice, not a published number; small
# next to the CNN-s layers' weight spread (std ~0.1-0.3).
NOISE = 0.01

Metrics = dict[str, jax.Array]
TrainStep = Callable[[Any, Any, jax.Array, jax.Array], tuple[Any, Any, Metrics]]


class _Block(nn.Module):
  """Pre-LN transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    d_model = x.shape[-1]
    y = nn.LayerNorm()(x)
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads, qkv_features=d_model, dropout_rate=self.dropout_rate
    )(y, deterministic=not train)
    x = x + nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    y = nn.LayerNorm()(x)
    y = nn.Dense(self.mlp_dim)(y)
    y = nn.gelu(y)
    y = nn.Dense(d_model)(y)
    return x + nn.Dropout(self.dropout_rate)(y, deterministic=not train)


class _Stack(nn.Module):
  """`num_blocks` transformer blocks and a final LayerNorm."""

  num_blocks: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for _ in range(self.num_blocks):
      x = _Block(self.num_heads, self.mlp_dim, self.dropout_rate)(x, train)
    return nn.LayerNorm()(x)


class HyperRep(nn.Module):
  """The hyper-representation autoencoder: tokens [B, T, d] <-> latent z [B, latent_dim].

  Defaults are the published MNIST CNN-s setting; `make_model` fills the zoo-dependent fields
  (token_dim, num_tokens, num_layers, max_units) from a WeightSpec.
  """

  token_dim: int  # d: entries per token (fan_in + bias, zero-padded)
  num_tokens: int  # T: units over all layers
  num_layers: int  # L: size of the layer embedding
  max_units: int  # size of the position-in-layer embedding (the widest layer)
  d_model: int = D_MODEL
  num_heads: int = NUM_HEADS
  num_blocks: int = NUM_BLOCKS
  latent_dim: int = LATENT_DIM
  dropout_rate: float = 0.0
  mlp_dim: int | None = None  # None: 4 * d_model
  projection_dim: int = 64  # output of the contrastive projection head (its hidden width: d_model)
  # Per-layer token projections, as in the reference code: tokens come layer by layer
  # (weights.tokenize), layer l has layer_units[l] tokens of layer_widths[l] real entries, and
  # each layer gets its own input embedder and output head on just those entries. Empty: one
  # shared Dense in and out over the padded token width (`make_model(..., per_layer=False)`).
  layer_units: tuple[int, ...] = ()
  layer_widths: tuple[int, ...] = ()
  # How the latent is read off the encoder: "token" (a learned compression token's output, so at
  # most d_model numbers pass) or "flatten" (the reference's 2022 default: every token's output,
  # flattened, one linear map to latent_dim). Only "flatten" can keep the ~all of a model's
  # weights that decoding unseen models needs (latent_dim near the parameter count; docs/sampling.md).
  bottleneck: str = "token"
  # Per-layer scales (e.g. each layer's weight std over the training zoo, `make_model(...,
  # layer_variance=)`): token values are divided by their layer's scale on the way in and the
  # decoded ones multiplied by it on the way out, so every layer enters at unit scale. Empty: raw.
  layer_scale: tuple[float, ...] = ()
  # Per-model scaling (needs the per-layer fields): each model's layers enter divided by their
  # own RMS instead of layer_scale, and the decoded ones leave multiplied by it; the L log-RMS are appended
  # to the latent, so an embedding still decodes alone and samplers draw the scales with it. For
  # zoos whose models differ in weight scale by far more than the layer-wise normaliser evens out
  # (a hyperparameter zoo mixing U(0, 1) and Kaiming inits); the loss then weighs each model's
  # layers by their own variance (`make_train_step`).
  model_scaling: bool = False
  layer_sizes: tuple[
    int, ...
  ] = ()  # real entries per layer (units x (fan_in + bias)); per-layer models

  @property
  def embedding_dim(self) -> int:
    """Width of an embedding: the latent, plus the L per-layer log-RMS with `model_scaling`."""
    return self.latent_dim + (self.num_layers if self.model_scaling else 0)

  def setup(self):
    mlp_dim = self.mlp_dim or 4 * self.d_model
    stack = functools.partial(_Stack, self.num_blocks, self.num_heads, mlp_dim, self.dropout_rate)
    if self.layer_units:
      if sum(self.layer_units) != self.num_tokens or len(self.layer_widths) != len(
        self.layer_units
      ):
        raise ValueError(
          f"layer_units {self.layer_units} must sum to num_tokens={self.num_tokens}, with one "
          f"layer_widths entry per layer (got {self.layer_widths})."
        )
      self.token_embed = [nn.Dense(self.d_model) for _ in self.layer_units]
    elif self.model_scaling:
      raise ValueError(
        "model_scaling needs the per-layer fields (make_model(..., per_layer=True))."
      )
    else:
      self.token_embed = nn.Dense(self.d_model)
    self.enc_layer_embed = nn.Embed(self.num_layers, self.d_model)
    self.enc_position_embed = nn.Embed(self.max_units, self.d_model)
    if self.bottleneck not in BOTTLENECKS:
      raise ValueError(
        f"bottleneck {self.bottleneck!r} is unknown; allowed values: {list(BOTTLENECKS)}."
      )
    if self.bottleneck == "token":
      self.compression_token = self.param(
        "compression_token", nn.initializers.normal(0.02), (1, 1, self.d_model)
      )
    self.encoder = stack()
    self.to_latent = nn.Dense(self.latent_dim)
    self.from_latent = nn.Dense(self.num_tokens * self.d_model)
    self.dec_layer_embed = nn.Embed(self.num_layers, self.d_model)
    self.dec_position_embed = nn.Embed(self.max_units, self.d_model)
    self.decoder = stack()
    # Zero-initialised output: the first reconstruction is 0, so training starts from a
    # normalised error near 1 instead of the random projection's much larger one.
    if self.layer_units:
      self.to_tokens = [
        nn.Dense(width, kernel_init=nn.initializers.zeros) for width in self.layer_widths
      ]
    else:
      self.to_tokens = nn.Dense(self.token_dim, kernel_init=nn.initializers.zeros)
    self.projection = [nn.Dense(self.d_model), nn.Dense(self.projection_dim)]

  def encode(
    self, values: jax.Array, layer: jax.Array, position: jax.Array, train: bool = False
  ) -> jax.Array:
    """Token values [B, T, d], layer and position ids [B, T] (or [T]) -> z [B, embedding_dim]."""
    chex.assert_shape(values, (None, self.num_tokens, self.token_dim))
    if self.model_scaling:  # each model at its own per-layer scale (layer_scale is then moot)
      scale = self.model_scale(values)
      values = values / weights.per_token(scale, layer)
    else:
      values = values / self._scale(layer)
    x = self._embed_tokens(values) + self.enc_layer_embed(layer) + self.enc_position_embed(position)
    if self.bottleneck == "flatten":
      z = self.to_latent(self.encoder(x, train).reshape(x.shape[0], -1))
    else:
      token = jnp.broadcast_to(self.compression_token, (x.shape[0], 1, self.d_model)).astype(
        x.dtype
      )
      z = self.to_latent(self.encoder(jnp.concatenate([token, x], axis=1), train)[:, 0])
    return jnp.concatenate([z, jnp.log(scale)], axis=-1) if self.model_scaling else z

  def decode(
    self, z: jax.Array, layer: jax.Array, position: jax.Array, train: bool = False
  ) -> jax.Array:
    """z [B, embedding_dim], layer and position ids [B, T] (or [T]) -> token values [B, T, d]."""
    chex.assert_shape(z, (None, self.embedding_dim))
    z, log_scale = z[:, : self.latent_dim], z[:, self.latent_dim :]
    x = self.from_latent(z).reshape(z.shape[0], self.num_tokens, self.d_model)
    x = x + self.dec_layer_embed(layer) + self.dec_position_embed(position)
    values = self._token_values(self.decoder(x, train))
    return values * (
      weights.per_token(jnp.exp(log_scale), layer) if self.model_scaling else self._scale(layer)
    )

  def model_scale(self, values: jax.Array) -> jax.Array:
    """Each model's per-layer RMS over the real entries of token values [B, T, d]: [B, L]."""
    if len(self.layer_sizes) != len(self.layer_units):
      raise ValueError(
        f"layer_sizes {self.layer_sizes} needs one entry per layer ({len(self.layer_units)})."
      )
    squares = jnp.stack(
      [jnp.sum(values[:, a:b] ** 2, axis=(1, 2)) for a, b, _ in self._slices()], axis=-1
    )
    return jnp.sqrt(jnp.maximum(squares / jnp.asarray(self.layer_sizes, values.dtype), 1e-12))

  def _scale(self, layer: jax.Array) -> jax.Array | float:
    """Each token's layer scale, broadcastable against token values ([B, T, 1] or [T, 1]); 1 when unset."""
    if not self.layer_scale:
      return 1.0
    if len(self.layer_scale) != self.num_layers:
      raise ValueError(
        f"layer_scale has {len(self.layer_scale)} entries; the model has {self.num_layers} layers."
      )
    return weights.per_token(jnp.asarray(self.layer_scale, jnp.float32), layer)

  def _slices(self):
    starts = np.cumsum((0,) + tuple(self.layer_units))
    return [(int(a), int(b), w) for a, b, w in zip(starts[:-1], starts[1:], self.layer_widths)]

  def _embed_tokens(self, values: jax.Array) -> jax.Array:
    if not self.layer_units:
      return self.token_embed(values)
    return jnp.concatenate(
      [embed(values[:, a:b, :w]) for embed, (a, b, w) in zip(self.token_embed, self._slices())],
      axis=1,
    )

  def _token_values(self, x: jax.Array) -> jax.Array:
    if not self.layer_units:
      return self.to_tokens(x)
    pad = lambda y, w: jnp.pad(y, ((0, 0), (0, 0), (0, self.token_dim - w)))
    return jnp.concatenate(
      [pad(head(x[:, a:b]), w) for head, (a, b, w) in zip(self.to_tokens, self._slices())], axis=1
    )

  def project(self, z: jax.Array) -> jax.Array:
    """The contrastive projection head: z [B, latent_dim] -> [B, projection_dim]."""
    hidden, out = self.projection
    return out(nn.gelu(hidden(z)))

  def __call__(
    self, values: jax.Array, layer: jax.Array, position: jax.Array, train: bool = False
  ) -> tuple[jax.Array, jax.Array]:
    """(z [B, latent_dim], reconstruction [B, T, d]); touches every submodule, so init covers all."""
    z = self.encode(values, layer, position, train)
    self.project(z)
    return z, self.decode(z, layer, position, train)


def make_model(
  spec: WeightSpec,
  token_dim: int | None = None,
  per_layer: bool = False,
  layer_variance: Any = None,
  **fields: Any,
) -> HyperRep:
  """A HyperRep sized for the zoo of `spec` (token width `token_dim`, or the natural one; a
  narrower width splits long units into several tokens, `weights.tokens.pieces`).

  per_layer: a separate input embedder and output head per layer (the reference code's
    choice), instead of one shared projection over the padded token width.
  layer_variance: [L] per-layer weight variances of the training zoo; given, each layer's tokens
    enter scaled to unit variance and leave scaled back (`HyperRep.layer_scale`).
  """
  layout = weights.token_layout(spec, token_dim)
  num_tokens, dim = layout.index.shape
  if layer_variance is not None:
    fields = dict(fields, layer_scale=tuple(float(v) ** 0.5 for v in np.asarray(layer_variance)))
  if per_layer:  # a layer's tokens (units x pieces) and their real width (at most the token width)
    fields = dict(
      fields,
      layer_units=tuple(int(n) for n in np.bincount(layout.layer, minlength=len(spec.layers))),
      layer_widths=tuple(
        min(layer.fan_in + (layer.param("bias") is not None), dim) for layer in spec.layers
      ),
      layer_sizes=tuple(
        layer.units * (layer.fan_in + (layer.param("bias") is not None)) for layer in spec.layers
      ),
    )
  return HyperRep(
    token_dim=dim,
    num_tokens=num_tokens,
    num_layers=len(spec.layers),
    max_units=int(layout.position.max()) + 1,
    **fields,
  )


SCHEDULES = ("constant", "cosine")
TARGETS = ("clean", "view")


def make_optimizer(
  learning_rate: float = LEARNING_RATE,
  *,
  schedule: str = "constant",
  total_steps: int = 1,
  warmup_steps: int = 0,
) -> optax.GradientTransformation:
  """Adam with the published learning rate; "cosine" warms up linearly for `warmup_steps`, then
  decays to zero at `total_steps` (a step budget instead of the reference's ReduceLROnPlateau)."""
  if schedule not in SCHEDULES:
    raise ValueError(f"schedule {schedule!r} is unknown; allowed values: {list(SCHEDULES)}.")
  if schedule == "constant":
    return optax.adam(learning_rate)
  return optax.adam(
    optax.warmup_cosine_decay_schedule(
      0.0, learning_rate, max(warmup_steps, 1), max(total_steps, warmup_steps + 1)
    )
  )


def init(key: jax.Array, model: HyperRep) -> Any:
  """Initial variables of `model` ({'params': ...}), from dummy tokens of one model."""
  values = jnp.zeros((1, model.num_tokens, model.token_dim), jnp.float32)
  ids = jnp.zeros((1, model.num_tokens), jnp.int32)
  return jax.jit(model.init)(key, values, ids, ids)


REDUCTIONS = ("layer_mean", "global_mean")


def reconstruction_loss(
  recon: jax.Array,
  target: jax.Array,
  mask: jax.Array,
  layer: jax.Array,
  layer_variance: jax.Array,
  reduction: str = "layer_mean",
) -> jax.Array:
  """Layer-wise normalised MSE (Schürholt et al., 2022), so every layer's scale counts alike.

  Each real entry's squared error is divided by its layer's weight variance across the zoo.
  "layer_mean": these are averaged within each layer (over all of the layer's entries in the
  batch), then the layer means are averaged with equal weight over the layers present, so a
  small layer weighs as much as a large one. "global_mean" (the reference code's reduction):
  one mean over all real entries, so layers weigh by their size.

  Args:
    recon, target: token values [B, T, d].
    mask: bool [B, T, d] (or [T, d]), True on real entries; padding is ignored.
    layer: int [B, T] (or [T]), each token's layer index.
    layer_variance: [L] per-layer variances, e.g. `weights.layer_variances` of the zoo, or
      [B, L] per model and layer (`HyperRep.model_scaling`: each model's own layer variance).
  Returns:
    A scalar.
  """
  chex.assert_equal_shape([recon, target])
  chex.assert_rank(layer_variance, {1, 2})
  num_layers = layer_variance.shape[-1]
  mask = jnp.broadcast_to(mask, recon.shape).astype(recon.dtype)
  layer = jnp.broadcast_to(layer, recon.shape[:-1])
  error = (recon - target) ** 2 * mask / weights.per_token(layer_variance, layer)
  if reduction == "global_mean":
    return error.sum() / jnp.maximum(mask.sum(), 1)
  if reduction != "layer_mean":
    raise ValueError(f"reduction {reduction!r} is unknown; allowed values: {list(REDUCTIONS)}.")
  total = jax.ops.segment_sum(error.sum(-1).reshape(-1), layer.reshape(-1), num_layers)
  count = jax.ops.segment_sum(mask.sum(-1).reshape(-1), layer.reshape(-1), num_layers)
  present = count > 0
  per_layer = total / jnp.where(present, count, 1)
  return jnp.sum(jnp.where(present, per_layer, 0)) / jnp.maximum(present.sum(), 1)


def nt_xent(a: jax.Array, b: jax.Array, temperature: float = TEMPERATURE) -> jax.Array:
  """SimCLR's NT-Xent loss of B positive pairs (a[i], b[i]) among 2B embeddings: a scalar.

  Cosine similarities over temperature; each of the 2B embeddings classifies its partner
  against the 2B - 2 others (itself excluded); the cross-entropies are averaged.
  """
  chex.assert_equal_shape([a, b])
  chex.assert_rank(a, 2)
  n = a.shape[0]
  x = jnp.concatenate([a, b])
  x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  logits = x @ x.T / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
  partner = jnp.concatenate([jnp.arange(n) + n, jnp.arange(n)])
  log_p = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_p, partner[:, None], axis=-1))


def augment(
  key: jax.Array,
  flat: jax.Array,
  spec: WeightSpec,
  token_dim: int | None = None,
  *,
  noise: float = NOISE,
  erase_p: float = ERASE_P,
  permute: bool = True,
  target: str = "clean",
) -> tuple[Tokens, Tokens]:
  """One augmented view of each model, and the target its reconstruction should match.

  A random hidden-unit permutation (function preserving) per model, tokenised to width
  `token_dim`; the view adds N(0, noise^2) to the real entries and applies random erasing
  with probability `erase_p`. `target` "clean": the target is the same permuted model without
  noise (denoising); "view": the permuted model with the view's noise (not its erasing), so the
  targets themselves are new points around every model (the reference reconstructs the
  augmented view). `permute=False` skips the permutation (e.g. to fit a small zoo exactly).

  Args:
    key: PRNG key.
    flat: [B, n] models as `weights.flatten` vectors (spec order).
  Returns:
    (view, target): Tokens with values [B, T, d].
  """
  chex.assert_shape(flat, (None, spec.size))
  perm_key, noise_key, erase_key = jax.random.split(key, 3)
  params = weights.unflatten(flat, spec)
  if permute:
    params = weights.random_permutation(perm_key, params, spec)
  if target not in TARGETS:
    raise ValueError(f"target {target!r} is unknown; allowed values: {list(TARGETS)}.")
  clean, _ = weights.tokenize(params, spec, dim=token_dim)
  noisy = weights.add_noise(noise_key, clean, noise)
  view = weights.random_erase(erase_key, noisy, p=erase_p)
  return view, (noisy if target == "view" else clean)


def make_train_step(
  model: HyperRep,
  tx: optax.GradientTransformation,
  *,
  spec: WeightSpec,
  token_dim: int | None = None,
  layer_variance: jax.Array,
  gamma: float = GAMMA,
  temperature: float = TEMPERATURE,
  noise: float = NOISE,
  erase_p: float = ERASE_P,
  permute: bool = True,
  reduction: str = "layer_mean",
  target: str = "clean",
) -> TrainStep:
  """Builds the jitted `step(params, opt_state, flat_batch [B, n], key)`.

  Two augmented views of each model; loss = gamma * NT-Xent(projections of the two views'
  z) + (1 - gamma) * layer-wise normalised reconstruction of each view's clean permuted
  tokens. Returns (params, opt_state, {'loss', 'reconstruction', 'contrastive'}); the same
  key gives the same step. `permute` and `target` as in `augment`, `reduction` as in
  `reconstruction_loss`.
  """
  token_dim = model.token_dim if token_dim is None else token_dim
  layer_variance = jnp.asarray(layer_variance, jnp.float32)
  chex.assert_shape(layer_variance, (len(spec.layers),))

  def loss_fn(params, views: Tokens, targets: Tokens, dropout_key):
    enc_key, dec_key = jax.random.split(dropout_key)
    z = model.apply(
      params,
      views.values,
      views.layer,
      views.position,
      True,
      method=HyperRep.encode,
      rngs={"dropout": enc_key},
    )
    recon = model.apply(
      params,
      z,
      targets.layer,
      targets.position,
      True,
      method=HyperRep.decode,
      rngs={"dropout": dec_key},
    )
    projected = model.apply(params, z, method=HyperRep.project)
    a, b = jnp.split(projected, 2)
    contrastive = nt_xent(a, b, temperature)
    # With model_scaling every model's layers count by their own variance, not the zoo's.
    variance = (
      model.apply(params, targets.values, method=HyperRep.model_scale) ** 2
      if model.model_scaling
      else layer_variance
    )
    reconstruction = reconstruction_loss(
      recon, targets.values, targets.mask, targets.layer, variance, reduction
    )
    loss = gamma * contrastive + (1 - gamma) * reconstruction
    return loss, {"loss": loss, "reconstruction": reconstruction, "contrastive": contrastive}

  @jax.jit
  def step(params, opt_state, flat_batch: jax.Array, key: jax.Array):
    key_1, key_2, dropout_key = jax.random.split(key, 3)
    view_1, target_1 = augment(
      key_1,
      flat_batch,
      spec,
      token_dim,
      noise=noise,
      erase_p=erase_p,
      permute=permute,
      target=target,
    )
    view_2, target_2 = augment(
      key_2,
      flat_batch,
      spec,
      token_dim,
      noise=noise,
      erase_p=erase_p,
      permute=permute,
      target=target,
    )
    views = jax.tree.map(lambda u, v: jnp.concatenate([u, v]), view_1, view_2)
    targets = jax.tree.map(lambda u, v: jnp.concatenate([u, v]), target_1, target_2)
    grads, metrics = jax.grad(loss_fn, has_aux=True)(params, views, targets, dropout_key)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics

  return step


def make_embed(
  model: HyperRep, spec: WeightSpec, token_dim: int | None = None, batch_size: int = 256
) -> Callable[[Any, jax.Array], jax.Array]:
  """Builds `embed(params, flat [N, n]) -> z [N, embedding_dim]`: clean tokens, eval mode.

  One jitted call per `batch_size` models (`training.map_batches`), so any N shares one
  compilation. `token_dim` None: the model's.
  """
  token_dim = model.token_dim if token_dim is None else token_dim

  @jax.jit
  def embed_batch(params, flat: jax.Array) -> jax.Array:
    tokens, _ = weights.tokenize(weights.unflatten(flat, spec), spec, dim=token_dim)
    return model.apply(params, tokens.values, tokens.layer, tokens.position, method=HyperRep.encode)

  def embed(params, flat: jax.Array) -> jax.Array:
    chex.assert_shape(flat, (None, spec.size))
    if flat.shape[0] == 0:
      return jnp.zeros((0, model.embedding_dim), jnp.float32)
    return jnp.asarray(training.map_batches(lambda x: embed_batch(params, x), flat, batch_size))

  return embed


def make_decode(
  model: HyperRep, spec: WeightSpec, token_dim: int | None = None
) -> Callable[[Any, jax.Array], Any]:
  """Builds the jitted `decode(params, z [N, embedding_dim])` -> params pytree with leading [N]."""
  layout = weights.token_layout(spec, model.token_dim if token_dim is None else token_dim)
  layer, position = jnp.asarray(layout.layer), jnp.asarray(layout.position)

  @jax.jit
  def decode(params, z: jax.Array) -> Any:
    chex.assert_shape(z, (None, model.embedding_dim))
    values = model.apply(params, z, layer, position, method=HyperRep.decode)
    return weights.detokenize(values, spec)

  return decode


# ---------------------------------------------------------------------------- on disk

_INFO_FILE, _PARAMS_DIR = "encoder.json", "params"


def save(directory: str, model: HyperRep, params: Any, spec: WeightSpec, **info: Any) -> None:
  """Writes a trained autoencoder: encoder.json (module fields, weight spec, `info` such as
  layer variances and the loss history) and the Orbax params; `load` reads it back."""
  os.makedirs(directory, exist_ok=True)
  fields = {
    f.name: getattr(model, f.name)
    for f in dataclasses.fields(model)
    if f.name not in ("parent", "name")
  }
  info = jax.tree.map(lambda x: np.asarray(x).tolist() if hasattr(x, "shape") else x, info)
  with ocp.StandardCheckpointer() as checkpointer:
    path = os.path.join(os.path.abspath(directory), _PARAMS_DIR)
    checkpointer.save(path, params, force=True)
    checkpointer.wait_until_finished()
  zoo_lib.write_json_atomic(
    {"model": fields, "spec": spec.to_dict(), "info": info}, os.path.join(directory, _INFO_FILE)
  )


def load(directory: str) -> tuple[HyperRep, Any, WeightSpec, dict[str, Any]]:
  """(model, params, spec, info) of an autoencoder written by `save`."""
  path = os.path.join(directory, _INFO_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{directory!r} holds no trained autoencoder ({_INFO_FILE} is missing); train one "
      "with: python -m zoo_jax.encode --config=configs/hyperrep.py --zoo=DIR --workdir=OUT"
    )
  with open(path) as f:
    record = json.load(f)
  model = HyperRep(
    **{k: tuple(v) if isinstance(v, list) else v for k, v in record["model"].items()}
  )
  abstract = jax.tree.map(
    lambda x: np.empty(x.shape, x.dtype), jax.eval_shape(lambda: init(jax.random.key(0), model))
  )
  with ocp.StandardCheckpointer() as checkpointer:
    params = checkpointer.restore(os.path.join(os.path.abspath(directory), _PARAMS_DIR), abstract)
  return model, params, WeightSpec.from_dict(record["spec"]), record["info"]


# The encode method (config.method = "hyperrep"): Hyper-representations: a self-supervised
# autoencoder over weight tokens; its embeddings are the features. Settings: config.hyperrep (model,
# optimisation, augmentations). Seed 0's autoencoder is saved for zoo_jax.sample, with the pool's
# held-out models named (sampling checks decoding on them).


def featurizer(fit: methods.Fit):
  """Trains the autoencoder self-supervised on the training states; returns `states -> z [N, D]`."""
  config, train, seed = fit.config, fit.train, fit.seed
  h = config.hyperrep
  # The layer-wise normaliser comes from the (filtered) training states only, read in blocks of states.
  layer_variance = jnp.asarray(streaming.layer_variances(train.flat, train.spec))
  model = make_model(
    train.spec,
    per_layer=h.get("per_layer", False),
    layer_variance=layer_variance if h.get("input_scaling", False) else None,
    **h.model.to_dict(),
  )
  init_key, fit_key = jax.random.split(jax.random.key(seed))
  params = init(init_key, model)
  # A step budget (num_steps) sets the epochs: ceil(num_steps / steps per epoch).
  steps_per_epoch = max(len(train.flat) // min(h.batch_size, len(train.flat)), 1)
  num_epochs = h.num_epochs if h.get("num_steps") is None else -(-h.num_steps // steps_per_epoch)
  tx = make_optimizer(
    h.learning_rate,
    schedule=h.get("schedule", "constant"),
    total_steps=num_epochs * steps_per_epoch,
    warmup_steps=h.get("warmup_steps", 0),
  )
  step = make_train_step(
    model,
    tx,
    spec=train.spec,
    layer_variance=layer_variance,
    gamma=h.gamma,
    temperature=h.temperature,
    noise=h.noise,
    erase_p=h.erase_p,
    permute=h.permute,
    reduction=h.get("reduction", "layer_mean"),
    target=h.get("target", "clean"),
  )
  params, _, history = training.fit(
    step,
    params,
    tx.init(params),
    train.flat,
    key=fit_key,
    num_epochs=num_epochs,
    batch_size=h.batch_size,
    checkpoint_dir=fit.checkpoint_dir,
    progress=config.progress_bar,
    desc=f"hyperrep seed {seed}",
  )
  if fit.save_dir is not None:
    # held_out_models: "zoo/model_id" keys kept out of its training (zoo_jax.sample checks decoding on them).
    save(
      fit.save_dir,
      model,
      params,
      train.spec,
      layer_variance=layer_variance,
      history=history,
      held_out_models=sorted(fit.held_out),
    )
  embed = make_embed(model, train.spec)
  return lambda states: np.asarray(
    embed(params, states.flat)
  )  # in batches: states.flat may be on disk


METHOD = methods.FeatureMethod(featurizer=featurizer, embeddings=True)
