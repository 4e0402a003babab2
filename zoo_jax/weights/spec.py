"""The weight spec: a static, JSON-serialisable description of one model's parameters.

A `WeightSpec` lists the layers of a Flax params pytree in a fixed order, and for each
parameter its name, shape, dtype and offset in the model's flat vector. Every layout in
`zoo_jax.weights` (flat vectors, neuron tokens, pad-chunks) is a function of the spec
alone, so the spec is all a reader needs to turn arrays back into params.

The spec is a static pytree (no leaves): it can be returned from, or passed into, a
`jit`- or `vmap`-transformed function, and it is hashable.
"""

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

Params = Mapping[str, Any]

# Layer kinds, in the order layers are sorted by default: convolutions come before the
# dense layers they feed, whatever the dict key order says.
KINDS = ("conv", "dense", "other")
# Within a layer, the kernel comes first, then the bias, then anything else by name.
_PARAM_ORDER = {"kernel": 0, "bias": 1}
_SPEC_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ParamSpec:
  """One array of a layer: `name` ('kernel', 'bias', ...), its shape, dtype and flat offset."""

  name: str
  shape: tuple[int, ...]
  dtype: str
  offset: int

  @property
  def size(self) -> int:
    return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One module of the params tree: its path of dict keys, kind and parameters."""

  path: tuple[str, ...]
  kind: str  # one of KINDS
  params: tuple[ParamSpec, ...]

  @property
  def name(self) -> str:
    return "/".join(self.path)

  @property
  def offset(self) -> int:
    return self.params[0].offset

  @property
  def size(self) -> int:
    return sum(p.size for p in self.params)

  @property
  def param_names(self) -> tuple[str, ...]:
    return tuple(p.name for p in self.params)

  def param(self, name: str) -> ParamSpec | None:
    """The parameter called `name`, or None."""
    for p in self.params:
      if p.name == name:
        return p
    return None

  @property
  def units(self) -> int:
    """Output units (conv channels or dense features): the kernel's last axis."""
    return self._kernel().shape[-1]

  @property
  def fan_in(self) -> int:
    """Incoming weights per unit: all kernel positions x input channels."""
    return math.prod(self._kernel().shape[:-1])

  def _kernel(self) -> ParamSpec:
    kernel = self.param("kernel")
    if kernel is None:
      raise ValueError(f"Layer {self.name!r} has no 'kernel' (params: {list(self.param_names)}).")
    return kernel


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class WeightSpec:
  """The layout of one model's params: ordered layers, flat size, dtype of the flat vector.

  `wrapped` records whether the params had a top-level {'params': ...} collection, so
  `unflatten` gives back the same structure.
  """

  layers: tuple[LayerSpec, ...]
  wrapped: bool
  dtype: str

  @property
  def size(self) -> int:
    """Number of entries in the flat vector of one model."""
    return sum(layer.size for layer in self.layers)

  @property
  def layer_names(self) -> tuple[str, ...]:
    return tuple(layer.name for layer in self.layers)

  def to_dict(self) -> dict[str, Any]:
    """Plain JSON-able dicts and lists."""
    return {
      "version": _SPEC_VERSION,
      "wrapped": self.wrapped,
      "dtype": self.dtype,
      "layers": [
        {
          "path": list(layer.path),
          "kind": layer.kind,
          "params": [
            {"name": p.name, "shape": list(p.shape), "dtype": p.dtype, "offset": p.offset}
            for p in layer.params
          ],
        }
        for layer in self.layers
      ],
    }

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "WeightSpec":
    """Inverse of `to_dict`."""
    if d.get("version") != _SPEC_VERSION:
      raise ValueError(
        f"Unsupported WeightSpec version {d.get('version')!r}; expected {_SPEC_VERSION}."
      )
    layers = tuple(
      LayerSpec(
        path=tuple(layer["path"]),
        kind=layer["kind"],
        params=tuple(
          ParamSpec(p["name"], tuple(p["shape"]), p["dtype"], p["offset"]) for p in layer["params"]
        ),
      )
      for layer in d["layers"]
    )
    return cls(layers=layers, wrapped=bool(d["wrapped"]), dtype=d["dtype"])

  def to_json(self) -> str:
    return json.dumps(self.to_dict())

  @classmethod
  def from_json(cls, s: str) -> "WeightSpec":
    return cls.from_dict(json.loads(s))


def make_spec(
  params: Params, *, batch_ndim: int | None = None, layer_order: Sequence[str] | None = None
) -> WeightSpec:
  """Describes a params pytree (with or without the top-level 'params' key).

  Args:
    params: nested dicts of arrays; a layer is a dict whose values are arrays. Leaves may
      carry `batch_ndim` leading batch axes (e.g. [P, ...] for a population).
    batch_ndim: number of leading batch axes; None infers it from the biases (vectors).
    layer_order: layer names ('conv_0', or 'block/dense' when nested) in network order;
      None sorts by kind (conv before dense before anything else), then by name with
      numbers compared as numbers (dense_2 before dense_10).
  Returns:
    The spec of one model (batch axes stripped).
  """
  tree, wrapped = unwrap(params)
  leaves = _leaves(tree)
  if not leaves:
    raise ValueError("The params tree has no arrays.")
  if batch_ndim is None:
    batch_ndim = _infer_batch_ndim(leaves)
  groups: dict[tuple[str, ...], list[tuple[str, Any]]] = {}
  for path, leaf in leaves:
    if jnp.ndim(leaf) < batch_ndim:
      raise ValueError(
        f"Parameter {'/'.join(path)!r} has shape {jnp.shape(leaf)}, fewer axes than "
        f"batch_ndim={batch_ndim}."
      )
    groups.setdefault(path[:-1], []).append((path[-1], leaf))

  layers = [(path, _kind(dict(group), batch_ndim), group) for path, group in groups.items()]
  layers = _order(layers, layer_order)
  offset, specs = 0, []
  for path, kind, group in layers:
    group = sorted(group, key=lambda item: (_PARAM_ORDER.get(item[0], len(_PARAM_ORDER)), item[0]))
    param_specs = []
    for name, leaf in group:
      shape = tuple(int(n) for n in jnp.shape(leaf)[batch_ndim:])
      param_specs.append(ParamSpec(name, shape, jnp.dtype(leaf.dtype).name, offset))
      offset += math.prod(shape)
    specs.append(LayerSpec(path, kind, tuple(param_specs)))
  dtype = jnp.result_type(*(leaf.dtype for _, leaf in leaves))
  return WeightSpec(layers=tuple(specs), wrapped=wrapped, dtype=jnp.dtype(dtype).name)


def unwrap(params: Params) -> tuple[Params, bool]:
  """Strips a top-level {'params': ...} collection; returns (tree, whether it was there)."""
  if (
    isinstance(params, Mapping)
    and set(params.keys()) == {"params"}
    and isinstance(params["params"], Mapping)
  ):
    return params["params"], True
  return params, False


def layer_arrays(
  params: Params, spec: WeightSpec
) -> tuple[list[dict[str, jax.Array]], tuple[int, ...]]:
  """The arrays of each layer of `spec`, in spec order, and the common leading batch shape.

  Checks that the tree holds exactly the spec's parameters with the spec's shapes (after
  the same leading batch shape); raises a ValueError naming the first that does not.
  """
  tree, _ = unwrap(params)
  found = {path: leaf for path, leaf in _leaves(tree)}
  expected = {layer.path + (p.name,) for layer in spec.layers for p in layer.params}
  if set(found) != expected:
    missing = sorted("/".join(p) for p in expected - set(found))
    extra = sorted("/".join(p) for p in set(found) - expected)
    raise ValueError(f"Params do not match the spec: missing {missing}, unexpected {extra}.")
  batch_shape = None
  out = []
  for layer in spec.layers:
    arrays = {}
    for p in layer.params:
      leaf = found[layer.path + (p.name,)]
      shape = tuple(jnp.shape(leaf))
      n = len(shape) - len(p.shape)
      if n < 0 or shape[n:] != p.shape or (batch_shape is not None and shape[:n] != batch_shape):
        raise ValueError(
          f"Parameter '{layer.name}/{p.name}' has shape {shape}; the spec expects "
          f"{list(batch_shape or ())} + {list(p.shape)} (batch axes, then the "
          f"model's)."
        )
      batch_shape = shape[:n]
      arrays[p.name] = jnp.asarray(leaf)
    out.append(arrays)
  return out, batch_shape


def build_params(arrays: Sequence[Mapping[str, jax.Array]], spec: WeightSpec) -> dict[str, Any]:
  """Nested params dicts from per-layer arrays (in spec order); re-wraps if the spec says so."""
  tree: dict[str, Any] = {}
  for layer, layer_params in zip(spec.layers, arrays):
    node = tree
    for key in layer.path:
      node = node.setdefault(key, {})
    for p in layer.params:
      node[p.name] = layer_params[p.name]
  return {"params": tree} if spec.wrapped else tree


def check_unit_layers(spec: WeightSpec, purpose: str) -> None:
  """Raises a ValueError naming the first layer that is not a conv or dense layer.

  Tokens and permutations are defined over units (a kernel's last axis plus the bias),
  which only conv and dense layers with a 'kernel' and an optional 'bias' have.
  """
  for layer in spec.layers:
    if layer.kind in ("conv", "dense"):
      continue
    names = list(layer.param_names)
    hint = ""
    if {"scale", "mean", "var"} & set(names):
      hint = " (a normalisation layer such as BatchNorm or LayerNorm?)"
    elif "kernel" in names and len(layer.param("kernel").shape) < 2:
      hint = " (a kernel needs at least 2 axes: inputs and units)"
    raise ValueError(
      f"{purpose} supports only conv and dense layers with 'kernel' and 'bias'; "
      f"layer {layer.name!r} has params {names}{hint}."
    )


def _leaves(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
  """(path, array) pairs in dict insertion order."""
  if isinstance(tree, Mapping):
    out = []
    for key, value in tree.items():
      out.extend(_leaves(value, prefix + (str(key),)))
    return out
  if not hasattr(tree, "shape"):
    raise ValueError(f"Leaf {'/'.join(prefix)!r} is a {type(tree).__name__}, not an array.")
  return [(prefix, tree)]


def _infer_batch_ndim(leaves: list[tuple[tuple[str, ...], Any]]) -> int:
  # A bias is a vector per model, so its extra axes are the batch axes.
  ranks = {jnp.ndim(leaf) - 1 for path, leaf in leaves if path[-1] == "bias"}
  if not ranks:
    raise ValueError("Cannot infer the batch axes: the params have no 'bias'; pass batch_ndim.")
  if len(ranks) > 1:
    raise ValueError(
      f"Biases have different ranks {sorted(r + 1 for r in ranks)}; pass batch_ndim."
    )
  batch_ndim = ranks.pop()
  if batch_ndim < 0:
    raise ValueError("A 'bias' is a scalar; pass batch_ndim.")
  return batch_ndim


def _kind(group: dict[str, Any], batch_ndim: int) -> str:
  if "kernel" not in group or not set(group) <= {"kernel", "bias"}:
    return "other"
  rank = jnp.ndim(group["kernel"]) - batch_ndim
  return "dense" if rank == 2 else "conv" if rank >= 3 else "other"


def _natural_key(name: str) -> list[Any]:
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _order(
  layers: list[tuple[tuple[str, ...], str, Any]], layer_order: Sequence[str] | None
) -> list[tuple[tuple[str, ...], str, Any]]:
  by_name = {"/".join(path): item for item in layers for path in [item[0]]}
  if layer_order is None:
    return sorted(layers, key=lambda item: (KINDS.index(item[1]), _natural_key("/".join(item[0]))))
  if sorted(layer_order) != sorted(by_name):
    missing = sorted(set(by_name) - set(layer_order))
    unknown = sorted(set(layer_order) - set(by_name))
    raise ValueError(
      f"layer_order must name every layer once: missing {missing}, "
      f"unknown {unknown}, given {list(layer_order)}."
    )
  return [by_name[name] for name in layer_order]
