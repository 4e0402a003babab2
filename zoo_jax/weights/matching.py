"""Weight matching: the permutation of B's hidden units that brings it closest to A (Ainsworth et al., 2023).

Merging two independently trained networks by averaging their weights fails mostly because
their hidden units are in arbitrary order. Weight matching maximises sum_l <W_l^A, P_l W_l^B P_{l-1}^T>
over the permutation group of `zoo_jax.weights.symmetry` by coordinate descent: for one hidden
layer at a time (the others fixed), the best permutation is a linear assignment problem
(scipy's `linear_sum_assignment`) on the similarity of the units' incoming and outgoing weights.
One model pair at a time (host numpy, a few milliseconds per sweep for the zoo architectures).
"""

from typing import Any

import jax
import numpy as np
import scipy.optimize

from zoo_jax.weights import spec as spec_lib
from zoo_jax.weights import symmetry
from zoo_jax.weights.spec import Params, WeightSpec


def _unit_vectors(arrays: list[dict[str, np.ndarray]], layer: int, link) -> np.ndarray:
  """[units, fan_in + 1 + fan_out]: every weight touching each unit of hidden layer `layer`."""
  a = arrays[layer]
  units = a["kernel"].shape[-1]
  incoming = [a["kernel"].reshape(-1, units).T]
  if "bias" in a:
    incoming.append(a["bias"][:, None])
  nxt = arrays[layer + 1]["kernel"]
  if link.mode == "conv":  # HWIO: the input-channel axis
    outgoing = np.moveaxis(nxt, -2, 0).reshape(units, -1)
  elif link.mode == "dense":
    outgoing = nxt
  else:  # conv -> dense flatten: row s * C + c belongs to channel c
    outgoing = nxt.reshape(link.spatial, units, -1).transpose(1, 0, 2).reshape(units, -1)
  return np.concatenate(incoming + [outgoing], axis=1)


def weight_matching(
  params_a: Params,
  params_b: Params,
  spec: WeightSpec | None = None,
  *,
  max_sweeps: int = 100,
  seed: int = 0,
) -> symmetry.Permutations:
  """Permutations (one int32 [units_l] per hidden layer, `symmetry.permute`'s convention) that align
  model B to model A; both single models (no batch axis)."""
  spec = spec_lib.make_spec(params_a) if spec is None else spec
  links = symmetry._feedforward_links(spec)  # noqa: SLF001  (raises for non-chain architectures)
  arrays_a, batch_a = spec_lib.layer_arrays(jax.tree.map(np.asarray, params_a), spec)
  _, batch_b = spec_lib.layer_arrays(params_b, spec)
  if batch_a or batch_b:
    raise ValueError(
      f"weight_matching takes two single models, got batch axes {batch_a} and {batch_b}."
    )
  arrays_a = [{k: np.asarray(v, np.float64) for k, v in a.items()} for a in arrays_a]
  arrays_b = spec_lib.layer_arrays(jax.tree.map(np.asarray, params_b), spec)[0]
  arrays_b = [{k: np.asarray(v, np.float64) for k, v in b.items()} for b in arrays_b]
  perms = [np.arange(layer.units, dtype=np.int32) for layer in spec.layers[: len(links)]]
  rng = np.random.default_rng(seed)
  for _ in range(max_sweeps):
    changed = False
    for layer in rng.permutation(len(links)):
      trial = list(perms)
      trial[layer] = np.arange(len(perms[layer]), dtype=np.int32)
      moved = symmetry._permute_one(arrays_b, trial, links, xp=np)  # noqa: SLF001  (host numpy)
      similarity = (
        _unit_vectors(arrays_a, layer, links[layer]) @ _unit_vectors(moved, layer, links[layer]).T
      )
      _, columns = scipy.optimize.linear_sum_assignment(similarity, maximize=True)
      columns = columns.astype(np.int32)
      if not np.array_equal(columns, perms[layer]):
        # Accept only a strict improvement: ties would otherwise cycle between equal optima.
        old = similarity[np.arange(len(columns)), perms[layer]].sum()
        new = similarity[np.arange(len(columns)), columns].sum()
        if new > old + 1e-12 * max(1.0, abs(old)):
          perms[layer], changed = columns, True
    if not changed:
      break
  return tuple(perms)


def activation_matching(
  acts_a: list[np.ndarray], acts_b: list[np.ndarray]
) -> symmetry.Permutations:
  """Permutations aligning B to A by the correlation of their units' outputs on the same inputs
  (Ainsworth et al.'s activation matching): one linear assignment per hidden layer.

  acts_a, acts_b: per layer (spec order, the last one unused), outputs [..., units]; every
  leading axis (images, positions) is a sample.
  """
  perms = []
  for a, b in zip(acts_a[:-1], acts_b[:-1]):
    a = np.asarray(a, np.float64).reshape(-1, a.shape[-1])
    b = np.asarray(b, np.float64).reshape(-1, b.shape[-1])
    a = (a - a.mean(0)) / (a.std(0) + 1e-8)
    b = (b - b.mean(0)) / (b.std(0) + 1e-8)
    _, columns = scipy.optimize.linear_sum_assignment(a.T @ b / len(a), maximize=True)
    perms.append(columns.astype(np.int32))
  return tuple(perms)


def align(
  params_a: Params, params_b: Params, spec: WeightSpec | None = None, **kwargs
) -> dict[str, Any]:
  """Model B with its hidden units permuted to match model A (same function as B)."""
  spec = spec_lib.make_spec(params_a) if spec is None else spec
  return symmetry.permute(params_b, weight_matching(params_a, params_b, spec, **kwargs), spec)
