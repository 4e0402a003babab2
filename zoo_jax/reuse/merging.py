"""Weight-space merging math shared by the merge methods (zoo_jax.reuse.mergers) and zoo_jax.merge.

Models are pytrees of numpy arrays; a population of them has a leading [M] axis on every leaf
(as zoo_jax.zoo.Zoo.params returns it): `stack`, `take`, `mean` move between the two, `flat` and
`unflatten` between a population and its flat weight vectors [M, n]. `Evaluator` is the loss and
accuracy of a population on the zoo's splits; `align_to` permutes hidden units to match one model
(weight or activation matching); `channel_statistics` and `repair` restore the unit statistics an
average loses (REPAIR); `interpolate` and `barrier_curve` walk the line between two
models; `cluster` groups models by the distance of their (aligned) weights.
"""

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
    conv_impl = zoo.config.get("conv_impl", "xla")
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
  `config.matching_images` training images ("activations")."""
  if config.alignment == "weights":
    aligned = [
      take(params, i) if i == ref else weights.align(take(params, ref), take(params, i), spec)
      for i in range(len(jax.tree.leaves(params)[0]))
    ]
    return jax.tree.map(np.asarray, stack(aligned))
  model = population.make_model(cohort)
  images = evaluate.splits["train"][0][: config.matching_images]
  x = population.normalize(images, *evaluate.normalization)
  acts = penultimate.make_layer_outputs(model)(jax.tree.map(jnp.asarray, params), x)
  acts = [np.asarray(a) for a in acts]
  aligned = []
  for i in range(len(acts[0])):
    perms = weights.activation_matching([a[ref] for a in acts], [a[i] for a in acts])
    aligned.append(take(params, i) if i == ref else weights.permute(take(params, i), perms, spec))
  return jax.tree.map(np.asarray, stack(aligned))


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
  layer_outputs = penultimate.make_layer_outputs(population.make_model(cohort))
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
    layer = params
    for key in spec.layers[l].path:
      layer = layer[key]
    if "bias" not in layer:
      raise ValueError(
        f"repair shifts each unit by its bias; layer {spec.layers[l].name} has none."
      )
    kernel = layer["kernel"]
    layer["kernel"] = kernel * gain.reshape((len(gain),) + (1,) * (kernel.ndim - 2) + (-1,))
    layer["bias"] = (layer["bias"] - mean) * gain + target_mean
  return params


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
