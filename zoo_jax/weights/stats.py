"""Per-layer weight statistics: StatNN features and layer-wise normalisation constants.

StatNN (Unterthiner et al., 2020, "Predicting Neural Network Accuracy from Weights")
describes a network by, for each layer's kernel and bias separately, the mean, the
variance and the 0/25/50/75/100th percentiles. Layer-wise loss normalisation (as in
the hyper-representation autoencoders) divides each layer's reconstruction error by that
layer's weight variance across the zoo, so small layers and large layers count alike.
"""

import functools
import jax
import jax.numpy as jnp
import numpy as np

from zoo_jax.weights import flat
from zoo_jax.weights.spec import Params, WeightSpec
from zoo_jax.weights.tokens import Tokens

STATNN_STATS = ("mean", "var", "p0", "p25", "p50", "p75", "p100")
_PERCENTILES = (0.0, 25.0, 50.0, 75.0, 100.0)


def statnn_feature_names(spec: WeightSpec) -> tuple[str, ...]:
  """Names of `statnn_features`, e.g. 'conv_0/kernel/p25', in feature order."""
  return tuple(f"{layer.name}/{p.name}/{stat}"
               for layer in spec.layers for p in layer.params for stat in STATNN_STATS)


@jax.jit
def statnn_features(params: Params, spec: WeightSpec | None = None) -> jax.Array:
  """StatNN features: per layer, per parameter (kernel, then bias): mean, var, percentiles.

  Args:
    params: pytree with optional leading batch axes B.
    spec: the layout; None builds it with `make_spec`.
  Returns:
    [*B, F] with F = 7 * (number of parameter arrays); names from `statnn_feature_names`.
    Variance is the population variance (ddof=0), percentiles interpolate linearly (as numpy).
  """
  vector, spec = flat.flatten(params, spec)
  features = []
  for layer in spec.layers:
    for p in layer.params:
      x = vector[..., p.offset:p.offset + p.size]
      features.append(jnp.stack([jnp.mean(x, axis=-1), jnp.var(x, axis=-1)], axis=-1))
      features.append(_percentiles(x, _PERCENTILES))
  return jnp.concatenate(features, axis=-1)


@jax.jit
def layer_variances(params: Params, spec: WeightSpec | None = None) -> jax.Array:
  """Each layer's weight variance across a zoo: [L].

  Args:
    params: pytree with leading batch axes B (e.g. [P] models).
    spec: the layout; None builds it with `make_spec`.
  Returns:
    [L] float, in spec order: the variance of all of layer l's entries (kernel and bias) over
    all models, pooled (ddof=0). Equals `token_layer_variances` on the tokens of the same zoo.
  """
  vector, spec = flat.flatten(params, spec)
  return jnp.stack([jnp.var(vector[..., layer.offset:layer.offset + layer.size])
                    for layer in spec.layers])


@functools.partial(jax.jit, static_argnames="num_layers")
def token_layer_variances(tokens: Tokens, num_layers: int) -> jax.Array:
  """Each layer's weight variance across a zoo of tokens (real entries only): [num_layers].

  Args:
    tokens: Tokens with values [*B, T, d] and layer ids [*B, T].
    num_layers: number of layers (static), e.g. len(spec.layers).
  """
  x = tokens.values.reshape(-1, tokens.values.shape[-1])
  real = tokens.mask.reshape(x.shape).astype(x.dtype)
  layer = tokens.layer.reshape(-1)
  count = jax.ops.segment_sum(real.sum(-1), layer, num_layers)
  mean = jax.ops.segment_sum((x * real).sum(-1), layer, num_layers) / count
  # Two passes (mean, then squared deviations) for the accuracy of jnp.var.
  deviation = (x - mean[layer][:, None]) ** 2 * real
  return jax.ops.segment_sum(deviation.sum(-1), layer, num_layers) / count


def per_token(per_layer: jax.Array, layer: jax.Array) -> jax.Array:
  """Per-layer constants [L] to per-token ones [*B, T, 1], broadcastable against token values."""
  return per_layer[layer][..., None]



def _percentiles(x: jax.Array, qs: tuple[float, ...]) -> jax.Array:
  """numpy's default ('linear') percentiles along the last axis: [..., n] -> [..., len(qs)].

  The positions q / 100 * (n - 1) are static, so this is one sort and static slices,
  much cheaper to compile than jnp.percentile.
  """
  n = x.shape[-1]
  xs = jnp.sort(x, axis=-1)
  pos = np.asarray(qs) / 100 * (n - 1)
  low = np.floor(pos).astype(int)
  high = np.minimum(low + 1, n - 1)
  t = (pos - low).astype(x.dtype)
  a, b = xs[..., low], xs[..., high]
  # numpy's lerp: from the nearer end, which keeps t = 0 and t = 1 exact.
  return jnp.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)
