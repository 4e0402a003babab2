"""NFN: a permutation-equivariant encoder of a conv/dense chain's weights (after Zhou et al.,
"Permutation Equivariant Neural Functionals", NeurIPS 2023).

The model is read by neurons (`weights.neuron_arrays`): layer l is weights W_l [out, in, F] and
a bias b_l [out], where `out` are its units, `in` the previous layer's, and F the kernel positions
(conv), the spatial positions a channel owns after the flatten, or 1. A hidden-unit permutation
permutes `out` of layer l and `in` of layer l+1 together, so a layer that mixes entries only by
means over neuron axes, with weights shared across neurons, commutes with every such permutation.
Each `NPLayer` here maps (W_l, b_l) with C channels per entry to new ones from:

  the entry itself; its row mean (over `in`) and column mean (over `out`); its bias;
  the next layer's column mean and the previous layer's row mean and bias (they share a neuron
  axis with W_l); a global vector of every layer's means.

These are the terms of the NP layer (every neuron axis treated as permutable). The hidden-neuron
(HNP) symmetry leaves the first layer's inputs and the last layer's outputs (the classes) in
place; `variant="hnp"` adds a learned embedding of those indices, so the encoder may tell the
classes apart and remains exactly invariant to the hidden-unit permutations, the network's only
symmetry here. The readout is invariant: each layer's channels averaged over its neurons (HNP also
keeps the per-class vectors of the last layer), then an MLP head.

`model_scaling` divides each model's layers by their own RMS and gives the log-RMS to the head
(`scale_embedding`: also to every entry of the layer), so zoos whose weights span orders of
magnitude (U(0, 1) and Kaiming inits) enter at unit scale without the encoder losing their scale.
With `standardize_scale` the head reads the log-RMS as z-scores of the training states (`build`
computes their centre and spread), beside the layer-normalised learned features rather than inside
their normalisation: in a seed zoo the layers' scale grows by a few hundredths per epoch, which is
most of what tells a better-trained state apart, and a LayerNorm over hundreds of features drowns it.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax import weights
from zoo_jax.encoders import methods, training

VARIANTS = ("np", "hnp")
READOUTS = ("mean", "moments")

Layers = tuple[tuple[jax.Array, jax.Array], ...]  # ((W [B, out, in, C], b [B, out, C]), ...)


def log_rms(layers: Layers) -> jax.Array:
  """Each layer's log-RMS over its kernel and bias entries, what `model_scaling` divides by: [N, L]."""
  return jnp.stack(
    [
      0.5 * jnp.log((jnp.sum(w**2, (1, 2, 3)) + jnp.sum(b**2, 1)) / (w[0].size + b[0].size) + 1e-12)
      for w, b in layers
    ],
    -1,
  )


class NPLayer(nn.Module):
  """One permutation-equivariant layer over a chain's (weights, bias) with C channels each."""

  features: int

  @nn.compact
  def __call__(self, layers: Layers) -> Layers:
    dense = lambda name: nn.Dense(self.features, name=name)
    num = len(layers)
    means = [jnp.concatenate([w.mean((1, 2)), b.mean(1)], -1) for w, b in layers]  # [B, 2C]
    context = dense("context")(jnp.concatenate(means, -1))  # [B, features]
    out = []
    for l, (w, b) in enumerate(layers):
      row, col = w.mean(2), w.mean(1)  # [B, out, C] over `in`; [B, in, C] over `out`
      new_w = (
        dense(f"w{l}")(w) + dense(f"w{l}_row")(row)[:, :, None] + dense(f"w{l}_col")(col)[:, None]
      )
      new_w = new_w + dense(f"w{l}_bias")(b)[:, :, None] + context[:, None, None]
      new_b = dense(f"b{l}")(b) + dense(f"b{l}_row")(row) + context[:, None]
      if l > 0:  # the previous layer's units are this layer's inputs
        prev_w, prev_b = layers[l - 1]
        new_w = new_w + dense(f"w{l}_prev")(jnp.concatenate([prev_w.mean(2), prev_b], -1))[:, None]
      if l < num - 1:  # the next layer's inputs are this layer's units
        next_col = layers[l + 1][0].mean(1)  # [B, out_l, C]
        new_w = new_w + dense(f"w{l}_next")(next_col)[:, :, None]
        new_b = new_b + dense(f"b{l}_next")(next_col)
      out.append((new_w, new_b))
    return tuple(out)


class NFNEncoder(nn.Module):
  """Neuron arrays of a conv/dense chain -> the invariant embedding [B, D]."""

  channels: Sequence[int] = (16, 16, 16)  # widths of the equivariant layers
  variant: str = "hnp"
  model_scaling: bool = True
  # Each layer's channels pooled over its neurons: "mean", or "moments" (mean and std).
  readout: str = "mean"
  # With model_scaling: also embed each layer's log-RMS into every entry of the layer (a constant
  # per layer, so equivariant), not only into the head.
  scale_embedding: bool = False
  # With model_scaling: the log-RMS as (x - centre) / spread, clipped to +-5 (per layer; empty: raw).
  scale_center: Sequence[float] = ()
  scale_spread: Sequence[float] = ()

  @nn.compact
  def __call__(self, layers: Layers) -> jax.Array:
    if self.variant not in VARIANTS:
      raise ValueError(f"nfn.model.variant is {self.variant!r}; allowed values: {list(VARIANTS)}.")
    if self.readout not in READOUTS:
      raise ValueError(f"nfn.model.readout is {self.readout!r}; allowed values: {list(READOUTS)}.")
    extra = []
    if self.model_scaling:  # each layer at its own RMS; the log-RMS goes to the head
      scale = log_rms(layers)  # [B, L]
      rms = jnp.exp(scale)
      layers = tuple(
        (w / rms[:, l, None, None, None], b / rms[:, l, None]) for l, (w, b) in enumerate(layers)
      )
      if len(self.scale_center):
        center, spread = jnp.asarray(self.scale_center), jnp.asarray(self.scale_spread)
        scale = jnp.clip((scale - center) / spread, -5.0, 5.0)
      extra.append(scale)
    first = self.channels[0]
    # Each layer's F-wide entries to C channels (F differs by layer: its own embedding).
    h = [
      (nn.Dense(first, name=f"embed_w{l}")(w), nn.Dense(first, name=f"embed_b{l}")(b[..., None]))
      for l, (w, b) in enumerate(layers)
    ]
    if self.model_scaling and self.scale_embedding:  # each layer's log-RMS on its entries
      scale = [
        nn.Dense(first, name=f"embed_scale{l}")(extra[0][:, l : l + 1]) for l in range(len(h))
      ]
      h = [(w + c[:, None, None], b + c[:, None]) for (w, b), c in zip(h, scale)]
    if (
      self.variant == "hnp"
    ):  # the indices the symmetry keeps: layer 0's inputs, the last's outputs
      w, b = h[0]
      h[0] = (w + self.param("inputs", nn.initializers.normal(0.1), w.shape[2:])[None, None], b)
      w, b = h[-1]
      classes = self.param("outputs", nn.initializers.normal(0.1), (w.shape[1], first))
      h[-1] = (w + classes[None, :, None], b + classes[None])
    h = tuple(h)
    for i, width in enumerate(self.channels):
      h = jax.tree.map(nn.gelu, NPLayer(width, name=f"np{i}")(h))
    pooled = [jnp.concatenate([w.mean((1, 2)), b.mean(1)], -1) for w, b in h]
    if self.readout == "moments":  # also the spread over the neurons, invariant as the mean is
      std = lambda x, axes: jnp.sqrt(jnp.var(x, axes) + 1e-6)  # finite gradient at zero spread
      pooled += [jnp.concatenate([std(w, (1, 2)), std(b, 1)], -1) for w, b in h]
    if self.variant == "hnp":  # per-class vectors of the last layer (its outputs are not permuted)
      w, b = h[-1]
      pooled.append(jnp.concatenate([w.mean(2), b], -1).reshape(w.shape[0], -1))
    return jnp.concatenate(pooled + extra, -1)


class NFN(nn.Module):
  """Neuron arrays of a conv/dense chain -> [B, num_outputs]; `embed` gives the invariant vector."""

  num_outputs: int
  channels: Sequence[int] = (16, 16, 16)
  variant: str = "hnp"
  model_scaling: bool = True
  readout: str = "mean"
  scale_embedding: bool = False
  head_features: Sequence[int] = (128,)
  # The log-RMS standardised (centre and spread per layer, from `build`) and kept out of the head's
  # LayerNorm; empty: raw and normalised with the learned features.
  scale_center: Sequence[float] = ()
  scale_spread: Sequence[float] = ()

  def setup(self):
    self.encoder = NFNEncoder(
      self.channels,
      self.variant,
      self.model_scaling,
      self.readout,
      self.scale_embedding,
      self.scale_center,
      self.scale_spread,
    )
    self.norm = nn.LayerNorm()
    self.hidden = [nn.Dense(width) for width in self.head_features]
    self.out = nn.Dense(self.num_outputs)

  def embed(self, layers: Layers, train: bool = False) -> jax.Array:
    del train
    return self.encoder(layers)

  def __call__(self, layers: Layers, train: bool = False) -> jax.Array:
    x = self.embed(layers)
    if self.model_scaling and len(self.scale_center):  # standardised already: beside the norm
      num = len(layers)
      x = jnp.concatenate([self.norm(x[:, :-num]), x[:, -num:]], -1)
    else:
      x = self.norm(x)
    for dense in self.hidden:
      x = nn.gelu(dense(x))
    return self.out(x)


def neuron_inputs(flat: np.ndarray, spec: weights.WeightSpec) -> Layers:
  """Flat states [N, n] -> the NFN's inputs: ((W [N, out, in, F], b [N, out]), ...), numpy."""
  arrays = jax.jit(lambda x: weights.neuron_arrays(weights.unflatten(x, spec), spec))
  return training.map_batches(arrays, flat, 512)


# The encode method (config.method = "nfn"): an NFN trained on the properties; one architecture
# (its weights are per layer). Settings: config.nfn.model (NFN's fields); training: config.train.


def build(fit: methods.Fit, num_outputs: int) -> methods.Network:
  settings = fit.config.nfn.model.to_dict()

  def inputs(states):
    if "nfn" not in states.cache:
      states.cache["nfn"] = neuron_inputs(states.flat, states.spec)
    return states.cache["nfn"]

  if settings.pop("standardize_scale", False) and settings.get("model_scaling", True):
    # The training states' log-RMS: its centre and spread per layer.
    scale = training.map_batches(jax.jit(log_rms), inputs(fit.train), 512)
    settings["scale_center"] = tuple(float(v) for v in scale.mean(0))
    settings["scale_spread"] = tuple(float(v) for v in scale.std(0) + 1e-6)
  module = NFN(num_outputs=num_outputs, **settings)

  embed_fn = jax.jit(lambda p, x: module.apply(p, x, method=NFN.embed))
  return methods.Network(
    module,
    inputs,
    embed=lambda params, states: training.map_batches(
      lambda x: embed_fn(params, x), inputs(states)
    ),
  )


METHOD = methods.DirectMethod(build=build)
