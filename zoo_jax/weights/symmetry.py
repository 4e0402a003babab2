"""The permutation symmetry of hidden units in feed-forward CNNs and MLPs.

Reordering the output units of a hidden layer l (the kernel's last axis and the bias)
and the matching inputs of layer l+1 leaves the network's function unchanged. The
matching inputs are the input-channel axis of a conv kernel (HWIO: axis -2), the rows of
a dense kernel after a dense layer, and, after the conv -> dense flatten in (H, W, C)
order, the rows {s * C + c : s < H * W} owned by channel c. The first layer's inputs
and the last layer's outputs (the classes) are never permuted.

Permutations are a tuple with one int32 array [*B, units_l] per hidden layer (every
layer but the last), in spec order; entry j says which old unit becomes unit j.
"""

import math
import re
from typing import Any, Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp

from zoo_jax.weights import spec as spec_lib
from zoo_jax.weights.spec import Params, WeightSpec

Permutations = tuple[jax.Array, ...]

# Names of modules whose outputs skip layers or add up: the unit correspondence between
# consecutive layers no longer holds, so the simple chain symmetry does not apply.
_RESIDUAL_NAME = re.compile(
  r"(?<![a-z])(res|resnet|residual|skip|shortcut|downsample)(?![a-z])|block|attention|attn",
  re.IGNORECASE,
)


class _Link(NamedTuple):
  """How layer l+1 consumes the units of layer l."""

  mode: str  # "conv" (input-channel axis), "dense" (rows), or "flatten" (rows s * C + c)
  spatial: int  # H * W positions per channel for "flatten", else 1


def _feedforward_links(spec: WeightSpec) -> tuple[_Link, ...]:
  """Checks that `spec` is a plain conv/dense chain; returns the link after each hidden layer.

  Raises a ValueError naming the layer for normalisation layers, nested or residual-style
  modules, a conv after a dense layer, or inputs that do not match the previous layer's units.
  """
  spec_lib.check_unit_layers(spec, "The permutation symmetry")
  for layer in spec.layers:
    if len(layer.path) > 1 or _RESIDUAL_NAME.search(layer.name):
      raise ValueError(
        f"The permutation symmetry supports only a flat chain of conv/dense "
        f"layers; layer {layer.name!r} looks like a nested or residual-style "
        f"module."
      )
  links = []
  for prev, cur in zip(spec.layers[:-1], spec.layers[1:]):
    kernel = cur.param("kernel").shape
    if cur.kind == "conv":
      if prev.kind != "conv":
        raise ValueError(
          f"Layer {cur.name!r} is a conv after the dense layer {prev.name!r}; "
          f"only conv -> dense flattening is supported."
        )
      if kernel[-2] != prev.units:
        raise ValueError(
          f"Layer {cur.name!r} has {kernel[-2]} input channels (kernel {kernel}) "
          f"but the previous layer {prev.name!r} has {prev.units} units."
        )
      links.append(_Link("conv", 1))
    elif prev.kind == "dense":
      if kernel[0] != prev.units:
        raise ValueError(
          f"Layer {cur.name!r} has {kernel[0]} inputs (kernel {kernel}) but the "
          f"previous layer {prev.name!r} has {prev.units} units."
        )
      links.append(_Link("dense", 1))
    else:
      if kernel[0] % prev.units:
        raise ValueError(
          f"Layer {cur.name!r} has {kernel[0]} inputs (kernel {kernel}), not a "
          f"multiple of the {prev.units} channels of the conv layer {prev.name!r}."
        )
      links.append(_Link("flatten", kernel[0] // prev.units))
  return tuple(links)


@jax.jit
def permute(
  params: Params, perms: Sequence[jax.Array], spec: WeightSpec | None = None
) -> dict[str, Any]:
  """Applies one permutation per hidden layer; the network's function is unchanged.

  Args:
    params: feed-forward conv/dense pytree, optional leading batch axes B.
    perms: one int array per hidden layer, [units_l] (shared by the batch) or [*B, units_l].
    spec: the layout; None builds it with `make_spec`.
  Returns:
    The permuted params, same structure and shapes.
  """
  spec = spec_lib.make_spec(params) if spec is None else spec
  links = _feedforward_links(spec)
  arrays, batch_shape = spec_lib.layer_arrays(params, spec)
  if len(perms) != len(links):
    raise ValueError(
      f"Expected {len(links)} permutations (one per hidden layer), got {len(perms)}."
    )
  perms = list(perms)
  for i, (perm, layer) in enumerate(zip(perms, spec.layers)):
    chex.assert_rank(perm, {1, len(batch_shape) + 1})
    chex.assert_shape(perm, (..., layer.units))
    perms[i] = jnp.broadcast_to(perm, batch_shape + (layer.units,))
  permute_one = lambda a, p: _permute_one(a, p, links)
  permuted = _over_batch(permute_one, len(batch_shape))(arrays, tuple(perms))
  return spec_lib.build_params(permuted, spec)


def sample_permutations(key: jax.Array, spec: WeightSpec) -> Permutations:
  """Uniformly random permutations of every hidden layer of one model: ([units_l] int32, ...).

  Each layer's permutation is the argsort of fresh uint32 random bits, all drawn in one
  call (one random-bits kernel instead of one per layer: cheaper to compile); ties among
  the bits, and with them any bias, have probability below units^2 / 2^33.
  """
  links = _feedforward_links(spec)
  units = [layer.units for layer in spec.layers[: len(links)]]
  bits = jax.random.bits(key, (sum(units),))
  perms, start = [], 0
  for n in units:
    perms.append(jnp.argsort(bits[start : start + n], stable=True).astype(jnp.int32))
    start += n
  return tuple(perms)


def random_permutation(
  key: jax.Array, params: Params, spec: WeightSpec | None = None
) -> dict[str, Any]:
  """Permutes every hidden layer at random: the permutation augmentation.

  For params with leading batch axes B, model b uses key `jax.random.split(key, prod(B))[b]`
  (raveled), so the result equals a vmap over the split keys.
  """
  spec = spec_lib.make_spec(params) if spec is None else spec
  _, batch_shape = spec_lib.layer_arrays(params, spec)
  keys = key
  if batch_shape:
    keys = jax.random.split(key, math.prod(batch_shape)).reshape(batch_shape + key.shape)
  perms = _over_batch(lambda k: sample_permutations(k, spec), len(batch_shape))(keys)
  return permute(params, perms, spec)


@jax.jit
def canonical_permutations(params: Params, spec: WeightSpec | None = None) -> Permutations:
  """Permutations sorting each hidden layer's units by bias, then squared norm of incoming weights.

  Both keys are invariant to permutations of the layer's inputs (the norm sums the sorted
  squares, so even its rounding is), hence permuted copies of a network get the same
  canonical form, unless two units tie on both keys (then their order follows the input
  order; a tie needs identical biases and norms, e.g. duplicated units).
  Returns ([*B, units_l] int32, ...).
  """
  spec = spec_lib.make_spec(params) if spec is None else spec
  links = _feedforward_links(spec)
  arrays, batch_shape = spec_lib.layer_arrays(params, spec)

  def one(arrays):
    perms = []
    for layer, a in zip(spec.layers[: len(links)], arrays):
      incoming = a["kernel"].reshape(-1, layer.units).T  # [units, fan_in]
      norm = jnp.sum(jnp.sort(incoming**2, axis=-1), axis=-1)
      bias = a.get("bias", jnp.zeros_like(norm))
      perms.append(jnp.lexsort((norm, bias)).astype(jnp.int32))  # the last key is the primary one
    return tuple(perms)

  return _over_batch(one, len(batch_shape))(arrays)


@jax.jit
def canonicalize(params: Params, spec: WeightSpec | None = None) -> dict[str, Any]:
  """The canonical representative of params' permutation orbit (see `canonical_permutations`)."""
  spec = spec_lib.make_spec(params) if spec is None else spec
  return permute(params, canonical_permutations(params, spec), spec)


def neuron_arrays(
  params: Params, spec: WeightSpec | None = None
) -> tuple[tuple[jax.Array, jax.Array], ...]:
  """The weight space by neurons, the view of permutation-equivariant encoders (NFN).

  One (weights [*B, out, in, F], bias [*B, out]) per layer of a conv/dense chain: `out` are the
  layer's units, `in` the units of the layer before (the input channels for the first), and F what
  connects one to the other: the k*k positions of a conv kernel, the H*W positions a channel
  owns after the conv -> dense flatten, 1 for dense after dense. A hidden-unit permutation
  (`permute`) permutes `out` of layer l and `in` of layer l+1 alike and nothing else; a missing
  bias is zeros.
  """
  spec = spec_lib.make_spec(params) if spec is None else spec
  links = _feedforward_links(spec)
  arrays, batch_shape = spec_lib.layer_arrays(params, spec)
  nb = len(batch_shape)
  out = []
  for l, (layer, a) in enumerate(zip(spec.layers, arrays)):
    kernel = a["kernel"]
    units = layer.units
    if layer.kind == "conv":  # [*B, k, k, in, out]
      kernel = kernel.reshape(batch_shape + (-1,) + kernel.shape[-2:])  # [*B, k*k, in, out]
    elif l > 0 and links[l - 1].mode == "flatten":  # rows s * C + c: [*B, S, C, out]
      kernel = kernel.reshape(batch_shape + (links[l - 1].spatial, -1, units))
    else:  # dense: [*B, in, out] -> [*B, 1, in, out]
      kernel = kernel[..., None, :, :]
    kernel = jnp.moveaxis(kernel, (nb, nb + 1, nb + 2), (nb + 2, nb + 1, nb))  # [*B, out, in, F]
    bias = a.get("bias", jnp.zeros(batch_shape + (units,), kernel.dtype))
    out.append((kernel, bias))
  return tuple(out)


def _permute_one(
  arrays: list[dict[str, jax.Array]], perms: Sequence[jax.Array], links: Sequence[_Link], xp=jnp
) -> list[dict[str, jax.Array]]:
  """One model's layer arrays with its hidden units permuted; `xp` is jax.numpy (traced, as
  `permute` runs it) or numpy (host loops such as weight matching's)."""
  arrays = [dict(a) for a in arrays]
  for l, (perm, link) in enumerate(zip(perms, links)):
    arrays[l]["kernel"] = xp.take(arrays[l]["kernel"], perm, axis=-1, mode="clip")
    if "bias" in arrays[l]:
      arrays[l]["bias"] = xp.take(arrays[l]["bias"], perm, axis=-1, mode="clip")
    kernel = arrays[l + 1]["kernel"]
    if link.mode == "conv":
      kernel = xp.take(kernel, perm, axis=-2, mode="clip")
    elif link.mode == "dense":
      kernel = xp.take(kernel, perm, axis=0, mode="clip")
    else:  # row s * C + c belongs to channel c
      rows, out = kernel.shape
      kernel = xp.take(kernel.reshape(link.spatial, -1, out), perm, axis=1, mode="clip")
      kernel = kernel.reshape(rows, out)
    arrays[l + 1]["kernel"] = kernel
  return arrays


def _over_batch(fn: Callable[..., Any], batch_ndim: int) -> Callable[..., Any]:
  """fn vmapped over `batch_ndim` leading axes of every argument."""
  for _ in range(batch_ndim):
    fn = jax.vmap(fn)
  return fn
