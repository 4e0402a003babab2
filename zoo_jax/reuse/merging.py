"""Weight-space merging math shared by the merge methods (zoo_jax.reuse.mergers) and zoo_jax.merge.

Models are pytrees of numpy arrays; a population of them has a leading [M] axis on every leaf
(as zoo_jax.zoo.Zoo.params returns it): `stack`, `take`, `mean` move between the two, `flat` and
`unflatten` between a population and its flat weight vectors [M, n]. `Evaluator` is the loss and
accuracy of a population on the zoo's splits; `align_to` permutes hidden units to match one model
(weight or activation matching); `channel_statistics` and `repair` restore the unit statistics an
average loses (REPAIR); `fit_layers` regresses each layer of a mix onto its models' mixed
outputs; `interpolate` and `barrier_curve` walk the line between two
models; `cluster` groups models by the distance of their (aligned) weights.
"""

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd
import scipy.cluster.hierarchy
import scipy.spatial.distance

from zoo_jax import data, models, weights, zoo as zoo_lib
from zoo_jax.engine import population
from zoo_jax.models import intercept
from zoo_jax.reuse import penultimate


class Evaluator:
  """Loss and accuracy of weights [P, ...] on the zoo's validation, test and (subset of) train split;
  `splits` holds the images and labels, `domains` each image's domain (`domain_names`; one domain
  unless the zoo was evaluated on several, config.dataset.domains)."""

  def __init__(self, zoo: zoo_lib.Zoo, cohort: population.Cohort, eval_size: int | None, seed: int):
    ds = zoo.config["dataset"]
    self.splits, self.domains = {}, {}  # images and labels; each image's domain index
    for split in data.SPLITS:
      s = data.load_as_zoo(ds, split, models.image_size(zoo.config["model"]["arch"]))
      keep = np.sort(np.random.default_rng(seed).permutation(len(s))[: eval_size or len(s)])
      self.splits[split] = (jnp.asarray(s.images[keep]), jnp.asarray(s.labels[keep]))
      self.domains[split] = np.zeros(len(keep), int) if s.domain is None else s.domain[keep]
    self.domain_names = tuple(ds.get("domains") or (ds["name"],))
    self.normalization = (s.mean, s.std)
    conv_impl = self.conv_impl = zoo.config.get("conv_impl", "xla")
    self._evaluate = population.make_evaluate(
      cohort,
      batch_size=500,
      mean=s.mean,
      std=s.std,
      num_classes=s.num_classes,
      conv_impl=conv_impl,
    )

    self._outputs = penultimate.make_outputs(
      cohort, mean=s.mean, std=s.std, num_classes=s.num_classes, conv_impl=conv_impl
    )

  def __call__(self, params: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    metrics = self._evaluate(jax.tree.map(jnp.asarray, params), *self.splits[split])
    return np.asarray(metrics.loss), np.asarray(metrics.accuracy)

  def outputs(self, params: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features [P, N, D], logits [P, N, K]) of weights [P, ...] on the split's images."""
    return self._outputs(params, self.splits[split][0])

  def correct(self, params: Any, split: str) -> np.ndarray:
    """Whether each model [P] classifies each image [N] of the split correctly: bool [P, N]."""
    return self.outputs(params, split)[1].argmax(-1) == np.asarray(self.splits[split][1])


def align_to(
  params: Any,
  ref: int,
  spec: weights.WeightSpec,
  config: ml_collections.ConfigDict,
  cohort: population.Cohort,
  evaluate: Evaluator,
) -> Any:
  """Every model [M, ...] with its hidden units permuted to match model `ref` (same functions):
  by weight matching (`config.alignment` "weights"), or by matching unit outputs on
  `config.matching_images` training images ("activations"). With `config.alignment_rounds` > 1
  (activations), each further round matches every model again to the mean outputs of the others
  as aligned so far (MergeMany, Ainsworth et al. 2023), so any two models correspond, not only
  each to `ref`."""
  if config.alignment == "weights":
    aligned = [
      take(params, i) if i == ref else weights.align(take(params, ref), take(params, i), spec)
      for i in range(len(jax.tree.leaves(params)[0]))
    ]
    return jax.tree.map(np.asarray, stack(aligned))
  model = population.make_model(cohort, conv_impl=evaluate.conv_impl)
  images = evaluate.splits["train"][0][: config.matching_images]
  x = population.normalize(images, *evaluate.normalization)
  acts = penultimate.make_layer_outputs(model)(jax.tree.map(jnp.asarray, params), x)
  acts = [_standardized(a) for a in acts[:-1]]  # [M, samples, units] per hidden layer
  num_models = len(acts[0])

  def match(target: list[np.ndarray], i: int) -> tuple:
    return weights.activation_matching([*target, None], [*(a[i] for a in acts), None])

  perms = [match([a[ref] for a in acts], i) for i in range(num_models)]
  for _ in range(config.get("alignment_rounds", 1) - 1):
    # MergeMany-style refinement: each model is matched again, from its own unit order, to the
    # mean unit outputs of all the others as currently aligned, so that every pair corresponds
    # (not only each model to `ref`).
    moved = [np.stack([a[i][:, p[l]] for i, p in enumerate(perms)]) for l, a in enumerate(acts)]
    total = [m.sum(0) for m in moved]
    perms = [
      match([(t - m[i]) / (num_models - 1) for t, m in zip(total, moved)], i)
      for i in range(num_models)
    ]
  aligned = [weights.permute(take(params, i), perms[i], spec) for i in range(num_models)]
  return jax.tree.map(np.asarray, stack(aligned))


def _standardized(outputs) -> np.ndarray:
  """[M, ..., units] -> [M, samples, units] with each unit's output at mean 0, std 1 (float32)."""
  a = np.asarray(outputs, np.float32)
  a = a.reshape(a.shape[0], -1, a.shape[-1])
  return (a - a.mean(1, keepdims=True)) / (a.std(1, keepdims=True) + 1e-8)


def channel_statistics(
  params: Any,
  evaluate: Evaluator,
  cohort: population.Cohort,
  num_images: int,
  layers: Sequence[int] | None = None,
  chunk: int = 16,
) -> list[tuple[np.ndarray, np.ndarray]]:
  """Per hidden layer (spec order, all layers but the last; or only those in `layers`): the
  (mean [P, C], std [P, C]) of each unit's output before pooling and activation, over
  `num_images` training images and positions (float64 sums; `chunk` models at a time bound the
  host memory)."""
  images = evaluate.splits["train"][0][:num_images]
  x = population.normalize(images, *evaluate.normalization)
  layer_outputs = penultimate.make_layer_outputs(
    population.make_model(cohort, conv_impl=evaluate.conv_impl)
  )
  num_models = len(jax.tree.leaves(params)[0])
  first, second, count = [], [], {}
  for start in range(0, num_models, chunk):
    part = jax.tree.map(lambda a: jnp.asarray(a[start : start + chunk]), params)
    outputs = layer_outputs(part, x)[:-1]
    chosen = range(len(outputs)) if layers is None else layers
    for i, l in enumerate(chosen):
      out = np.asarray(outputs[l])
      out = out.reshape(out.shape[0], out.shape[1], -1, out.shape[-1])
      # float64 sums: float32 ones over a million positions are off by ~1e-3.
      if start == 0:
        first.append([]), second.append([])
        count[i] = out.shape[1] * out.shape[2]
      first[i].append(out.sum(2, dtype=np.float64).sum(1))
      second[i].append((out * out).sum(2, dtype=np.float64).sum(1))
  stats = []
  for i in range(len(first)):
    mean = np.concatenate(first[i]) / count[i]
    var = np.concatenate(second[i]) / count[i] - mean**2
    stats.append((mean, np.sqrt(np.maximum(var, 0.0))))
  return stats


def repair(
  params: Any,
  targets: list[tuple[np.ndarray, np.ndarray]],
  spec: weights.WeightSpec,
  evaluate: Evaluator,
  cohort: population.Cohort,
  num_images: int,
) -> Any:
  """REPAIR (Jordan et al., 2023): models [P, ...] with each hidden unit's output rescaled, layer
  by layer, to the mean and std of `targets` (`channel_statistics`' form, e.g. the interpolated
  statistics of the models an average was made of). An average of imperfectly matched units
  loses variance; the correction is a positive affine map per unit, folded into its kernel and
  bias (it commutes with max-pooling). Returns numpy params."""
  params = jax.tree.map(np.array, params)
  for l, (target_mean, target_std) in enumerate(targets):
    ((mean, std),) = channel_statistics(params, evaluate, cohort, num_images, layers=[l])
    gain = target_std / np.maximum(std, 1e-8)
    layer = _layer(params, spec.layers[l], "repair shifts each unit by its bias")
    kernel = layer["kernel"]
    layer["kernel"] = kernel * gain.reshape((len(gain),) + (1,) * (kernel.ndim - 2) + (-1,))
    layer["bias"] = (layer["bias"] - mean) * gain + target_mean
  return params


def fit_layers(
  params: Any,
  teachers: Any,
  mixing: np.ndarray,
  spec: weights.WeightSpec,
  evaluate: Evaluator,
  cohort: population.Cohort,
  num_images: int,
  ridge: float = 1e-3,
  chunk: int = 8,
  batch_size: int = 500,
) -> Any:
  """Models [S, ...] refitted layer by layer, in call order, so that each layer's output (before
  pooling and activation) on `num_images` training images is the mix of its teachers' outputs:
  model s, layer l gets the least-squares kernel and bias from its own inputs at l (through the
  layers already refitted) to sum_i mixing[s, i] * (teacher i's output at l). Closed form and
  label-free, like REPAIR but every weight of the layer moves: the merged network is regressed
  onto the mixed features of the models it mixes, so errors do not compound from layer to layer.
  `teachers` [T, ...] must be aligned (their units correspond), `mixing` [S, T]; `ridge` scales
  each normal equation's diagonal (1 + ridge); `chunk` models and `batch_size` images at a time
  bound the memory. Conv/dense chains (no normalisation layers). Returns numpy params."""
  model = population.make_model(cohort, conv_impl=evaluate.conv_impl)
  x = population.normalize(evaluate.splits["train"][0][:num_images], *evaluate.normalization)
  teachers = jax.tree.map(jnp.asarray, teachers)
  params = jax.tree.map(np.array, params)
  mixing = np.asarray(mixing, np.float32)
  for start in range(0, len(mixing), chunk):
    rows = slice(start, start + chunk)
    part = jax.tree.map(lambda a: a[rows], params)
    # Each model's own teachers only: its k largest weights (k the chunk's most nonzero weights,
    # bucketed), [s, k] indices and weights.
    k = _bucket(int((mixing[rows] != 0).sum(1).max()), mixing.shape[1])
    if k * len(mixing[rows]) < mixing.shape[1]:
      index = np.argsort(-mixing[rows], axis=1, kind="stable")[:, :k]
      w = jnp.asarray(np.take_along_axis(mixing[rows], index, axis=1))
      own = jax.tree.map(lambda a: a[jnp.asarray(index)], teachers)  # [s, k, ...]
    else:  # as many forward passes as sharing the chunk's teachers: share them
      union = np.flatnonzero((mixing[rows] != 0).any(0))
      size = _bucket(len(union), mixing.shape[1])
      union = np.concatenate([union, np.setdiff1d(np.arange(mixing.shape[1]), union)])[:size]
      w = jnp.asarray(mixing[rows][:, union])
      own = jax.tree.map(lambda a: a[jnp.asarray(union)], teachers)  # [u, ...]
    for l, layer_spec in enumerate(spec.layers):
      gram, cross = 0.0, 0.0
      students = jax.tree.map(jnp.asarray, part)
      for b in range(0, len(x), batch_size):
        g, c = _normal_equations(model, students, own, w, x[b : b + batch_size], l)
        gram += np.asarray(g, np.float64)  # float64 sums over batches
        cross += np.asarray(c, np.float64)
      gram[:, np.arange(gram.shape[1]), np.arange(gram.shape[1])] *= 1 + ridge
      solution = np.linalg.solve(gram, cross)  # [s, D + 1, units]
      layer = _layer(part, layer_spec, "fit_layers fits a kernel and a bias")
      shape = layer["kernel"].shape  # [s, kh, kw, in, out] or [s, in, out]: patches' row order
      layer["kernel"] = solution[:, :-1].reshape(shape).astype(layer["kernel"].dtype)
      layer["bias"] = solution[:, -1].astype(layer["bias"].dtype)
    for dst, src in zip(jax.tree.leaves(params), jax.tree.leaves(part)):
      dst[rows] = src
  return params


def _layer(params: Any, layer_spec, purpose: str) -> dict:
  """The dict of one layer's arrays inside params (edited in place by the caller); one clear error
  when it has no bias."""
  layer = params
  for key in layer_spec.path:
    layer = layer[key]
  if "bias" not in layer:
    raise ValueError(f"{purpose}; layer {layer_spec.name} has none.")
  return layer


def _bucket(n: int, cap: int) -> int:
  """n rounded up to a power of two, at most cap: few distinct shapes to compile."""
  return min(1 << max(n - 1, 0).bit_length(), cap)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _normal_equations(model, params, teachers, mixing, x, layer: int):
  """Per model s of `params`: (X^T X, X^T T) over the images `x`, X the rows layer `layer`'s
  kernel multiplies (with a column of ones, the bias), T the teachers' outputs there mixed by
  mixing [s, k]: each model's own k teachers ([s, k, ...]) or k teachers shared ([k, ...])."""
  layer_output = lambda t: intercept.layer_outputs(model, t, x)[layer]
  per_model = jax.tree.leaves(teachers)[0].ndim == jax.tree.leaves(params)[0].ndim + 1
  shared = None if per_model else jax.vmap(layer_output)(teachers)

  def one(p, own, w):
    outputs = jax.vmap(layer_output)(own) if per_model else shared
    a = intercept.layer_inputs(model, p, x)[layer]
    a = a.reshape(-1, a.shape[-1])
    a = jnp.concatenate([a, jnp.ones((len(a), 1), a.dtype)], axis=1)
    target = jnp.einsum("k,k...->...", w, outputs).reshape(len(a), -1)
    return a.T @ a, a.T @ target

  if per_model:
    return jax.vmap(one)(params, teachers, mixing)
  return jax.vmap(lambda p, w: one(p, None, w))(params, mixing)


def stack(trees: list[Any]) -> Any:
  """Models -> a population [len(trees), ...]."""
  return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def take(tree: Any, i: int) -> Any:
  """Model `i` of a population."""
  return jax.tree.map(lambda x: x[i], tree)


def mean(tree: Any, index) -> Any:
  """The plain average of the models at positions `index` of a population: one model."""
  return jax.tree.map(lambda x: np.asarray(x)[np.asarray(index)].mean(0), tree)


def flat(tree: Any) -> np.ndarray:
  """A population's flat weight vectors [M, n] (zoo_jax.weights.flatten's order)."""
  return np.asarray(weights.flatten(jax.tree.map(jnp.asarray, tree))[0])


def unflatten(vector: np.ndarray, spec: weights.WeightSpec) -> Any:
  """One flat weight vector [n] -> one model (numpy float32 leaves)."""
  return jax.tree.map(np.asarray, weights.unflatten(jnp.asarray(vector, jnp.float32), spec))


def cluster(flat_weights: np.ndarray, num_clusters: int) -> np.ndarray:
  """Cluster labels [M] (1..k, k = min(num_clusters, M)) of an average-linkage hierarchical clustering
  of the models' Euclidean weight distances."""
  distance = scipy.spatial.distance.pdist(flat_weights)
  k = min(num_clusters, len(flat_weights))
  return scipy.cluster.hierarchy.fcluster(
    scipy.cluster.hierarchy.linkage(distance, "average"), k, "maxclust"
  )


def interpolate(a: Any, b: Any, alphas: np.ndarray) -> Any:
  """(1 - alpha) a + alpha b for each alpha: params [len(alphas), ...]."""
  return jax.tree.map(
    lambda x, y: (
      (1 - alphas.reshape((-1,) + (1,) * x.ndim)) * x[None]
      + alphas.reshape((-1,) + (1,) * x.ndim) * y[None]
    ),
    a,
    b,
  )


def barrier_curve(a: Any, b: Any, evaluate: Evaluator, num_points: int) -> pd.DataFrame:
  """Loss and accuracy on the train and test splits along the line from a to b, with the barrier:
  loss minus the straight line between the end points' losses."""
  alphas = np.linspace(0.0, 1.0, num_points)
  path = interpolate(a, b, alphas)
  out = {"alpha": alphas}
  for split in ("train", "test"):
    loss, acc = evaluate(path, split)
    out[f"{split}_loss"], out[f"{split}_acc"] = loss, acc
    out[f"{split}_barrier"] = loss - ((1 - alphas) * loss[0] + alphas * loss[-1])
  return pd.DataFrame(out)
