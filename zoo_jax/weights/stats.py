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
from zoo_jax.weights import matching
from zoo_jax.weights import symmetry
from zoo_jax.weights.spec import Params, WeightSpec
from zoo_jax.weights.tokens import Tokens

STATNN_STATS = ("mean", "var", "p0", "p25", "p50", "p75", "p100")
_PERCENTILES = (0.0, 25.0, 50.0, 75.0, 100.0)


def statnn_feature_names(spec: WeightSpec) -> tuple[str, ...]:
  """Names of `statnn_features`, e.g. 'conv_0/kernel/p25', in feature order."""
  return tuple(
    f"{layer.name}/{p.name}/{stat}"
    for layer in spec.layers
    for p in layer.params
    for stat in STATNN_STATS
  )


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
      x = vector[..., p.offset : p.offset + p.size]
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
  return jnp.stack(
    [jnp.var(vector[..., layer.offset : layer.offset + layer.size]) for layer in spec.layers]
  )


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


def novelty(
  models: np.ndarray,
  reference: np.ndarray,
  groups: np.ndarray,
  spec: WeightSpec,
  block: int = 256,
  candidates: int = 4,
) -> np.ndarray:
  """How new each of `models` is next to the `reference` models: [S] (0: a copy).

  The L2 distance of each model to its nearest reference model, in units of the reference's own
  spacing: the median, over reference models, of the distance to the nearest reference model of
  another group (another model of the zoo, not the same model at another epoch). A distance is
  the smallest of three: between the weights as stored, between their canonical permutations
  (`symmetry.canonicalize`), and, for a few candidate reference models, after matching the
  model's hidden units to the candidate's (`matching.weight_matching`). The candidates are the
  `candidates` nearest by the first two distances and the `candidates` nearest by their StatNN
  features, which no permutation changes. So a permuted copy and a perturbed copy count as
  copies, and so does a perturbed copy in a third unit order (e.g. a model aligned to another
  one for mixing, which canonical sorting misses once the weights moved); the figure is an upper
  bound of the distance up to hidden-unit permutations. Below ~0.3 a model is a perturbed copy of
  a reference model; ~1 is as far from the reference as its models are from each other.

  Args:
    models: [S, n] as `weights.flatten` vectors; reference: [N, n], N >= 2.
    groups: [N] labels of the reference models (e.g. "zoo/model_id"); at least two distinct.
    spec: the layout of both.
    block: rows per distance block (host memory: a few block x N float64 arrays).
    candidates: reference models per model and per shortlist that are matched unit by unit
      (host work: about 2 x candidates weight matchings of a few milliseconds per model).
  """
  groups = np.asarray(groups)
  if len(reference) < 2 or len(np.unique(groups)) < 2:
    raise ValueError(
      f"novelty needs reference models of at least two groups; got {len(reference)} models "
      f"of {len(np.unique(groups))} group(s)."
    )
  canonical = jax.jit(
    lambda x: flat.flatten(symmetry.canonicalize(flat.unflatten(x, spec), spec), spec)[0]
  )
  statnn = jax.jit(lambda x: statnn_features(flat.unflatten(x, spec), spec))
  unflatten = jax.jit(lambda x: flat.unflatten(x, spec))

  def forms(x):  # (as stored, canonical, StatNN features), float64 [len(x), .] each
    x = np.asarray(x, np.float32).reshape(-1, spec.size)
    parts = [(x[i : i + block],) for i in range(0, len(x), block)]
    canon = [np.asarray(canonical(jnp.asarray(p))) for (p,) in parts]
    stats = [np.asarray(statnn(jnp.asarray(p))) for (p,) in parts]
    return (
      x.astype(np.float64),
      np.concatenate(canon or [x]).astype(np.float64),
      np.concatenate(stats or [np.zeros((0, 1))]).astype(np.float64),
    )

  ref = forms(reference)
  ref_sq = [(b**2).sum(1) for b in ref[:2]]
  stat_scale = ref[2].std(0) + 1e-12
  ref_stats = ref[2] / stat_scale

  reference_models = {}  # j -> reference model j as params, made once

  def matched_distance(x: np.ndarray, j: int) -> float:  # x matched to reference model j
    if j not in reference_models:
      reference_models[j] = jax.tree.map(
        np.asarray, unflatten(jnp.asarray(reference[j], jnp.float32))
      )
    a = reference_models[j]
    b = jax.tree.map(np.asarray, unflatten(jnp.asarray(x, jnp.float32)))
    moved = symmetry.permute(b, matching.weight_matching(a, b, spec), spec)
    return float(np.linalg.norm(np.asarray(flat.flatten(moved, spec)[0]) - reference[j]))

  def nearest(x, exclude=None):
    x = forms(x)
    out = np.empty(len(x[0]))
    k = min(candidates, len(groups))
    for i in range(0, len(out), block):
      rows = slice(i, i + block)
      d2 = np.full((len(x[0][rows]), len(groups)), np.inf)
      for a, b, b_sq in zip(x[:2], ref[:2], ref_sq):
        part = a[rows]
        d2 = np.minimum(d2, (part**2).sum(1)[:, None] + b_sq[None, :] - 2 * part @ b.T)
      s2 = ((x[2][rows] / stat_scale)[:, None, :] - ref_stats[None]) ** 2
      s2 = s2.sum(-1)
      if exclude is not None:
        other = exclude[rows, None] != groups[None, :]
        d2, s2 = np.where(other, d2, np.inf), np.where(other, s2, np.inf)
      best = np.sqrt(np.maximum(d2.min(1), 0.0))
      if k:
        shortlist = np.concatenate(
          [np.argsort(d2, axis=1)[:, :k], np.argsort(s2, axis=1)[:, :k]], axis=1
        )
        for r, js in enumerate(shortlist):
          for j in np.unique(js):
            if np.isfinite(d2[r, j]):
              best[r] = min(best[r], matched_distance(x[0][i + r], j))
      out[rows] = best
    return out

  scale = float(np.median(nearest(reference, exclude=groups)))
  return nearest(models) / max(scale, 1e-12)


def per_token(per_layer: jax.Array, layer: jax.Array) -> jax.Array:
  """Per-layer constants to per-token ones, broadcastable against token values.

  per_layer [L] with layer ids [*B, T] gives [*B, T, 1]; per model and layer [B, L] (e.g. each
  model's own layer scales) with layer ids [B, T] or [T] gives [B, T, 1].
  """
  if per_layer.ndim == 1:
    return per_layer[layer][..., None]
  layer = jnp.broadcast_to(layer, per_layer.shape[:1] + layer.shape[-1:])
  return jnp.take_along_axis(per_layer, layer, axis=1)[..., None]


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
