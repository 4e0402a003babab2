"""SNE: Set-based Neural network Encoding (Andreis et al., NeurIPS 2024).

Each model's weights are pad-chunked per layer (`zoo_jax.weights.chunk`); the encoder
reads the chunks as a hierarchy of sets:

  chunk elements --set-to-set, set-to-vector--> chunk vector
  chunks of a layer --masked mean--> layer vector (+ learned layer positional encoding)
  layer vectors --set-to-set, set-to-vector--> network embedding --MLP--> predictions

Nothing in it depends on the architecture, so one batch can hold models of different
architectures: each is chunked with its own spec and padded to a common number of
chunks (`make_chunker(..., num_chunks)`, `pad_chunks`). Instead of architecture-specific
equivariant layers, SNE is made (approximately) invariant to the hidden-unit permutation
symmetry by logit invariance: a penalty on the change of its predictions under a random
permutation of the model (`logit_invariance_loss`, `make_permuted_chunker`).

The flat vectors these functions take are in `weights.flatten` order (per layer: kernel,
then bias). `Zoo.flat` concatenates leaves in pytree order (bias before kernel), which is
a different order: use `weights.flatten(zoo.params(ids, epoch), spec)[0]` instead.
"""

from typing import Any, Callable, NamedTuple, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax import weights
from zoo_jax.weights.chunks import DEFAULT_CHUNK_SIZE
from zoo_jax.weights.spec import WeightSpec
from zoo_jax.encoders import methods, training

POOLINGS = ("attention", "mean")


class SetBatch(NamedTuple):
  """Pad-chunked models padded to a common number of chunks C; any mix of architectures."""

  values: jax.Array  # [B, C, k] float, zero at padding
  mask: jax.Array  # [B, C, k] bool, True on real weights
  layer: jax.Array  # [B, C] int32, the chunk's layer index (spec order) in its own model
  chunk_mask: jax.Array  # [B, C] bool, True on real chunks (False on padding chunks)
  position: jax.Array  # [B, C] int32, the chunk's index within its layer (0 on padding chunks)


def _check_set_batch(batch: SetBatch) -> None:
  chex.assert_rank(batch.values, 3)
  chex.assert_equal_shape([batch.values, batch.mask])
  chex.assert_shape([batch.layer, batch.chunk_mask, batch.position], batch.values.shape[:2])


def _to_set_batch(chunks: weights.Chunks | SetBatch) -> SetBatch:
  """Chunks [C, k] or [B, C, k] (every chunk real), or a SetBatch, as a SetBatch [B, C, k]."""
  if isinstance(chunks, SetBatch):
    _check_set_batch(chunks)
    return chunks
  chex.assert_rank(chunks.values, {2, 3})
  if chunks.values.ndim == 2:
    chunks = jax.tree.map(lambda x: x[None], chunks)
  return SetBatch(
    values=chunks.values,
    mask=chunks.mask.astype(bool),
    layer=chunks.layer.astype(jnp.int32),
    chunk_mask=jnp.ones(chunks.layer.shape, bool),
    position=chunks.position.astype(jnp.int32),
  )


def _pad_to(batch: SetBatch, num_chunks: int) -> SetBatch:
  """Appends padding chunks (all entries and the chunk masked, layer 0) up to num_chunks."""
  pad = num_chunks - batch.values.shape[1]
  if pad < 0:
    raise ValueError(
      f"num_chunks={num_chunks} is fewer than the {batch.values.shape[1]} chunks "
      f"of the model; pass num_chunks >= the largest architecture's chunk count."
    )
  return SetBatch(
    values=jnp.pad(batch.values, ((0, 0), (0, pad), (0, 0))),
    mask=jnp.pad(batch.mask, ((0, 0), (0, pad), (0, 0))),
    layer=jnp.pad(batch.layer, ((0, 0), (0, pad))),
    chunk_mask=jnp.pad(batch.chunk_mask, ((0, 0), (0, pad))),
    position=jnp.pad(batch.position, ((0, 0), (0, pad))),
  )


def pad_chunks(
  chunks_list: Sequence[weights.Chunks | SetBatch], num_chunks: int | None = None
) -> SetBatch:
  """Concatenates chunked models of possibly different architectures into one SetBatch.

  Args:
    chunks_list: `weights.Chunks` ([C_i, k] or [B_i, C_i, k]) or SetBatch, one per group;
      all with the same chunk size k.
    num_chunks: the common C; None for the largest C_i.
  Returns:
    SetBatch [sum B_i, C, k], groups in order, padding chunks at the end of each model.
  """
  batches = [_to_set_batch(c) for c in chunks_list]
  sizes = {b.values.shape[-1] for b in batches}
  if len(sizes) != 1:
    raise ValueError(f"All chunks must have one chunk size; got {sorted(sizes)}.")
  num_chunks = max(b.values.shape[1] for b in batches) if num_chunks is None else num_chunks
  padded = [_pad_to(b, num_chunks) for b in batches]
  return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *padded)


def trim_padding(tree: Any) -> Any:
  """Every SetBatch in `tree` (host arrays) cut after its batch's last real chunk: padding chunks
  that no model of the batch uses are dropped (the encoder's output is the same, its cost is that of
  the batch's largest model). Other leaves are left as they are."""

  def trim(batch):
    if not isinstance(batch, SetBatch):
      return batch
    used = np.flatnonzero(np.asarray(batch.chunk_mask).any(axis=0))
    size = int(used[-1]) + 1 if len(used) else 1
    return SetBatch(*(x[:, :size] for x in batch))

  return jax.tree.map(trim, tree, is_leaf=lambda x: isinstance(x, SetBatch))


def num_chunks_of(spec: WeightSpec, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
  """Chunks of one model of `spec`: sum over layers of ceil(layer size / chunk_size)."""
  return int(weights.chunk_layout(spec, chunk_size).index.shape[0])


def layer_scales(flat: jax.Array, spec: WeightSpec) -> jax.Array:
  """Each layer's weight std over a zoo's flat vectors [N, n] (floored at 1e-4): [L].

  SNE's input scaling: the chunker divides every weight by its layer's scale from the training
  states, so layers of different spreads (and zoos of other architectures, each scaled by its
  own) enter the element MLP at unit scale.
  """
  flat = jnp.asarray(flat)
  return jnp.stack(
    [jnp.maximum(jnp.std(flat[:, l.offset : l.offset + l.size]), 1e-4) for l in spec.layers]
  )


def make_chunker(
  spec: WeightSpec,
  chunk_size: int = DEFAULT_CHUNK_SIZE,
  num_chunks: int | None = None,
  scale: jax.Array | None = None,
) -> Callable[[jax.Array], SetBatch]:
  """A jitted `flat [B, n] -> SetBatch [B, num_chunks, chunk_size]` for one architecture.

  `num_chunks` (None: this architecture's own count) should be the largest count over
  the architectures that share a batch, so their SetBatches concatenate along B. `scale`
  [L] (e.g. `layer_scales` of the training states) divides each layer's weights; None: raw.
  """
  num_chunks = num_chunks_of(spec, chunk_size) if num_chunks is None else num_chunks
  if num_chunks < num_chunks_of(spec, chunk_size):
    raise ValueError(
      f"num_chunks={num_chunks} is fewer than the "
      f"{num_chunks_of(spec, chunk_size)} chunks of this architecture at "
      f"chunk_size={chunk_size}."
    )

  divisor = None if scale is None else jnp.asarray(scale, jnp.float32)
  if divisor is not None:
    chex.assert_shape(divisor, (len(spec.layers),))

  @jax.jit
  def chunker(flat: jax.Array) -> SetBatch:
    chex.assert_shape(flat, (None, spec.size))
    chunks, _ = weights.chunk(weights.unflatten(flat, spec), spec, chunk_size=chunk_size)
    if divisor is not None:
      chunks = chunks._replace(values=chunks.values / divisor[chunks.layer][..., None])
    return _pad_to(_to_set_batch(chunks), num_chunks)

  return chunker


def make_permuted_chunker(
  spec: WeightSpec,
  chunk_size: int = DEFAULT_CHUNK_SIZE,
  num_chunks: int | None = None,
  scale: jax.Array | None = None,
) -> Callable[[jax.Array, jax.Array], SetBatch]:
  """A jitted `(key, flat [B, n]) -> SetBatch` of randomly hidden-unit-permuted copies.

  Each model gets its own permutation (`weights.random_permutation`); the copies compute
  the same function as the originals, so an invariant encoder maps both alike.
  """
  chunker = make_chunker(spec, chunk_size, num_chunks, scale)

  @jax.jit
  def permuted_chunker(key: jax.Array, flat: jax.Array) -> SetBatch:
    chex.assert_shape(flat, (None, spec.size))
    params = weights.random_permutation(key, weights.unflatten(flat, spec), spec)
    return chunker(weights.flatten(params, spec)[0])

  return permuted_chunker


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of x [..., N, d] over the N entries where mask [..., N] is True; 0 for empty sets."""
  weight = mask.astype(x.dtype)[..., None]
  total = jnp.sum(jnp.where(weight > 0, x, 0.0), axis=-2)
  return total / jnp.maximum(jnp.sum(weight, axis=-2), 1.0)


class SetBlock(nn.Module):
  """Set-to-set: pre-LayerNorm self-attention and MLP, both residual (a Set Transformer SAB).

  Permutation-equivariant over the set axis; masked entries are never attended to.
  """

  num_heads: int
  mlp_ratio: int = 2
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, train: bool = False) -> jax.Array:
    """x [..., N, d], mask [..., N] bool -> [..., N, d]."""
    d = x.shape[-1]
    h = nn.LayerNorm()(x)
    h = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, dropout_rate=self.dropout_rate)(
      h, h, mask=nn.make_attention_mask(mask, mask), deterministic=not train
    )
    x = x + nn.Dropout(self.dropout_rate)(h, deterministic=not train)
    h = nn.Dense(self.mlp_ratio * d)(nn.LayerNorm()(x))
    h = nn.Dense(d)(nn.gelu(h))
    return x + nn.Dropout(self.dropout_rate)(h, deterministic=not train)


class SetPool(nn.Module):
  """Set-to-vector: masked mean, or attention pooling by a learned query (Set Transformer PMA)."""

  pooling: str = "attention"
  num_heads: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    """x [..., N, d], mask [..., N] bool -> [..., d]; 0 for an all-masked set."""
    if self.pooling == "mean":
      return masked_mean(x, mask)
    d = x.shape[-1]
    query = self.param("query", nn.initializers.normal(0.02), (1, d))
    query = jnp.broadcast_to(query, x.shape[:-2] + (1, d))
    out = nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(
      query, nn.LayerNorm()(x), mask=mask[..., None, None, :]
    )
    # An all-masked set would attend uniformly to its padding; make it 0 as the mean does.
    return jnp.where(jnp.any(mask, axis=-1, keepdims=True), out[..., 0, :], 0.0)


class SNE(nn.Module):
  """Set-based encoder of pad-chunked models: SetBatch [B, C, k] -> [B, num_outputs].

  `embed` gives the network embedding [B, d_model] that the head reads. By default chunk
  elements carry no index, so the order inside a chunk does not matter, and chunks of a
  layer are pooled by a masked mean, so neither does their order: a layer is a bag of
  values. `element_positions` adds a learned embedding of each element's index in its chunk,
  `chunk_positions` one of each chunk's index in its layer (on its elements), so the
  encoder sees where a weight sits in its layer (SNE's positional encodings); padding chunks
  are ignored either way.
  Layer ids must be < max_layers (larger ones make the output NaN). Pass `train=True`
  with a 'dropout' rng when dropout_rate > 0.
  """

  num_outputs: int
  chunk_size: int = DEFAULT_CHUNK_SIZE
  d_model: int = 64  # width of chunk, layer and network vectors
  # Width of the per-weight elements. There are B * C * chunk_size of them (~11k per CNN-l
  # model), so this stage dominates the cost; it is narrower than d_model.
  element_dim: int = 32
  num_heads: int = 4
  num_chunk_blocks: int = 1  # set-to-set blocks over a chunk's elements
  num_layer_blocks: int = 1  # set-to-set blocks over a model's layer vectors
  max_layers: int = 16
  pooling: str = "attention"  # set-to-vector: "attention" or "mean"
  head_features: Sequence[int] = (64,)
  dropout_rate: float = 0.0
  element_positions: bool = False  # embed each element's index within its chunk
  chunk_positions: bool = False  # embed each chunk's index within its layer
  max_chunks_per_layer: int = 512  # size of the chunk-position table (index clipped to it)
  # Per-model scaling: each layer's weights enter divided by that model's own RMS of the layer, and
  # the log-RMS is embedded into the layer's vector, so models whose weight scales differ by orders
  # of magnitude (a hyperparameter zoo's U(0, 1) and Kaiming inits) all reach the element MLP at
  # unit scale without the encoder losing their scale.
  model_scaling: bool = False

  def setup(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"Unknown pooling {self.pooling!r}; allowed values: {list(POOLINGS)}.")
    e = self.element_dim
    # A set element is one weight: an MLP of its value, plus a learned embedding of its
    # layer (the same for the whole chunk, so it tells nothing of the element's index).
    self.value_in = nn.Dense(e)
    self.value_out = nn.Dense(e)
    self.element_layer = nn.Embed(self.max_layers, e)
    if self.element_positions:
      self.element_position = nn.Embed(self.chunk_size, e)
    if self.chunk_positions:
      self.chunk_position = nn.Embed(self.max_chunks_per_layer, e)
    self.chunk_blocks = [
      SetBlock(self.num_heads, dropout_rate=self.dropout_rate) for _ in range(self.num_chunk_blocks)
    ]
    self.chunk_pool = SetPool(self.pooling, self.num_heads)
    self.chunk_out = nn.Dense(self.d_model)
    # The layer positional encoding: layer vectors are otherwise an unordered set.
    self.layer_position = nn.Embed(self.max_layers, self.d_model)
    if self.model_scaling:
      self.layer_scale_in = nn.Dense(self.d_model)
    self.layer_blocks = [
      SetBlock(self.num_heads, dropout_rate=self.dropout_rate) for _ in range(self.num_layer_blocks)
    ]
    self.network_pool = SetPool(self.pooling, self.num_heads)
    self.head_norm = nn.LayerNorm()
    self.head_hidden = [nn.Dense(f) for f in self.head_features]
    self.head_out = nn.Dense(self.num_outputs)

  def embed(self, batch: SetBatch, train: bool = False) -> jax.Array:
    """The network embedding [B, d_model] of each model of the batch."""
    _check_set_batch(batch)
    chex.assert_axis_dimension(batch.values, 2, self.chunk_size)
    mask, chunk_mask = batch.mask.astype(bool), batch.chunk_mask.astype(bool)
    values = jnp.where(mask, batch.values, 0.0)
    # One-hot layer membership of the real chunks [B, C, L].
    member = jax.nn.one_hot(batch.layer, self.max_layers, dtype=values.dtype)
    member = member * chunk_mask[..., None].astype(values.dtype)
    if self.model_scaling:  # each model's per-layer RMS over its real weights [B, L]
      squares = jnp.einsum("bcl,bc->bl", member, jnp.sum(values**2, axis=-1))
      sizes = jnp.einsum("bcl,bc->bl", member, jnp.sum(mask, axis=-1).astype(values.dtype))
      log_rms = 0.5 * jnp.log(jnp.maximum(squares / jnp.maximum(sizes, 1.0), 1e-12))
      values = values * jnp.exp(-jnp.take_along_axis(log_rms, batch.layer, axis=1))[..., None]
    values = values[..., None]  # [B, C, k, 1]
    x = self.value_out(nn.gelu(self.value_in(values)))  # [B, C, k, element_dim]
    x = x + self.element_layer(batch.layer)[:, :, None, :]
    if self.element_positions:
      x = x + self.element_position(jnp.arange(self.chunk_size))[None, None]
    if (
      self.chunk_positions
    ):  # on the elements, before the nonlinear chunk stage (a sum after it would
      # average out of the layer mean)
      x = (
        x
        + self.chunk_position(jnp.minimum(batch.position, self.max_chunks_per_layer - 1))[
          :, :, None, :
        ]
      )
    for block in self.chunk_blocks:
      x = block(x, mask, train)
    chunk = self.chunk_out(self.chunk_pool(x, mask))  # [B, C, d_model]
    chunk = jnp.where(chunk_mask[..., None], chunk, 0.0)

    # Masked mean of each layer's chunks.
    counts = jnp.sum(member, axis=1)  # [B, L]
    layer = jnp.einsum("bcl,bcd->bld", member, chunk) / jnp.maximum(counts, 1.0)[..., None]
    layer_mask = counts > 0
    layer = layer + self.layer_position(jnp.arange(self.max_layers))[None]
    if self.model_scaling:
      layer = layer + self.layer_scale_in(log_rms[..., None])
    for block in self.layer_blocks:
      layer = block(layer, layer_mask, train)
    embedding = self.network_pool(layer, layer_mask)
    chex.assert_shape(embedding, (batch.values.shape[0], self.d_model))
    return embedding

  def __call__(self, batch: SetBatch, train: bool = False) -> jax.Array:
    """Predictions [B, num_outputs] from the network embedding."""
    h = self.head_norm(self.embed(batch, train))
    for dense in self.head_hidden:
      h = nn.gelu(dense(h))
    return self.head_out(h)


def logit_invariance_loss(
  apply_fn: Callable[[Any, SetBatch], jax.Array],
  params: Any,
  batch: SetBatch,
  permuted_batch: SetBatch,
) -> jax.Array:
  """Mean squared change of the predictions under a weight-space symmetry: a scalar.

  `apply_fn(params, batch) -> [B, ...]`; `permuted_batch` holds function-preserving copies
  of `batch`'s models (`make_permuted_chunker`). SNE's logit invariance regulariser: zero
  for an encoder invariant to the symmetry; add it, weighted, to the task loss.
  """
  out, permuted = apply_fn(params, batch), apply_fn(params, permuted_batch)
  chex.assert_equal_shape([out, permuted])
  return jnp.mean((out - permuted) ** 2)


# The encode method (config.method = "sne"): SNE: a set network over weight chunks, any architecture
# (cross-architecture test sets). Settings: config.sne (model: SNE's fields;
# invariance_weight; input_scaling); training: config.train. Its embeddings (SNE.embed) are written
# to embeddings.npz.


def build(fit: methods.Fit, num_outputs: int) -> methods.Network:
  config = fit.config
  size = config.sne.model.chunk_size
  # Every architecture it will read, one block of states each (a mixed pool has several).
  blocks = [b for z in fit.everything for b in z.blocks()]
  num_chunks = max(num_chunks_of(b.spec, size) for b in blocks)
  # Input scaling: each architecture's layers divided by their std over the training states
  # (another architecture's: over its own zoo's states), or raw weights.
  scales = {}
  for b in [*fit.train.blocks(), *blocks]:
    if config.sne.get("input_scaling", False) and b.spec not in scales:
      scales[b.spec] = layer_scales(b.flat, b.spec)
  chunk = {b.spec: make_chunker(b.spec, size, num_chunks, scales.get(b.spec)) for b in blocks}
  permuted = {
    b.spec: make_permuted_chunker(b.spec, size, num_chunks, scales.get(b.spec)) for b in blocks
  }
  concat = lambda parts: jax.tree.map(lambda *xs: np.concatenate(xs), *parts)

  def inputs(states):  # block by block, in the order of the states' table
    return concat([training.map_batches(chunk[b.spec], b.flat, 512) for b in states.blocks()])

  def permuted_inputs(states):  # fresh neuron permutations of every state, for the logit invariance
    return lambda key: concat(
      [
        training.map_batches(lambda x, fn=permuted[b.spec]: fn(key, x), b.flat, 512)
        for b in states.blocks()
      ]
    )

  # A mixed pool trains in batches of one architecture, each cut to that architecture's chunk count
  # (a CNN-s batch does not pay for CNN-l's padding).
  buckets = np.concatenate(
    [np.full(len(b.table), num_chunks_of(b.spec, size)) for b in fit.train.blocks()]
  )
  module = SNE(num_outputs=num_outputs, **config.sne.model.to_dict())
  embed_fn = jax.jit(lambda p, x: module.apply(p, x, method=SNE.embed))
  return methods.Network(
    module,
    inputs,
    train_kwargs=dict(
      invariance_weight=config.sne.invariance_weight,
      permuted=permuted_inputs(fit.train),
      buckets=buckets,
      trim=trim_padding,
    ),
    embed=lambda params, states: training.map_batches(
      lambda x: embed_fn(params, x), inputs(states)
    ),
  )


METHOD = methods.DirectMethod(build=build, cross_architecture=True)
