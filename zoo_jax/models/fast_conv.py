"""Convolutions as patches + matmul, for populations vmapped over per-model kernels on CPU.

`jax.vmap` of `lax.conv_general_dilated` over a batched kernel becomes one grouped
convolution (`feature_group_count = models`), and XLA:CPU runs grouped convolutions, above
all their kernel gradients, far below its matmul rate. Written as patch extraction (strided
slices: pure data movement) and one matmul, a vmapped convolution is a *batched*
dot_general over the model axis instead, and so are its two gradients (patches^T @ grad for
the kernel, grad @ kernel^T for the patches, whose transpose back to the image is a sum of
shifted slices). Same function as `lax.conv_general_dilated`; float sums are ordered
differently (~1e-6 relative). Two layouts of the patches:

- `patches_conv`: [N, H', W', kh*kw*C], the NHWC image's own order. Autodiff derives the
  gradients.
- `taps_conv`: [kh*kw*C, N*H'*W'], one contiguous block per kernel tap, so gathering the
  patches and summing their gradient back are block copies and adds, and a custom VJP
  writes each of the three products in the operand layout XLA:CPU multiplies fastest
  (measured per op in docs/speed.md). 1.6-1.9x faster per training step than `patches`.

`CONV_IMPLS[name]` is a drop-in for flax.linen.Conv's `conv_general_dilated` attribute, so
the Flax module stays the single definition of each architecture. `max_pool_2x2` is the
matching pool: a reshape and a max, whose gradient is a mask rather than select-and-scatter.
"""

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

# Flax's Conv always asks for channels-last: NHWC inputs, HWIO kernels, NHWC outputs.
_NHWC = ("NHWC", "HWIO", "NHWC")


def _check_nhwc(
  lhs, rhs, dimension_numbers, lhs_dilation, rhs_dilation, feature_groups, batch_groups
):
  expected = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  if (
    lhs.ndim != 4 or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != expected
  ):
    raise ValueError(
      f"The patches and taps convolutions support 2-D NHWC/HWIO/NHWC only, got {dimension_numbers}."
    )
  if (
    any(d not in (None, 1) for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
    or feature_groups != 1
    or batch_groups != 1
  ):
    raise ValueError(
      "The patches and taps convolutions support no dilations or feature/batch groups; use conv_impl='xla'."
    )


def _pad(lhs: jax.Array, rhs: jax.Array, window_strides, padding) -> jax.Array:
  """`lhs` with the convolution's padding (VALID, SAME or explicit pairs) applied."""
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  if any(p != (0, 0) for p in map(tuple, padding)):
    lhs = jnp.pad(lhs, ((0, 0), *map(tuple, padding), (0, 0)))
  return lhs


def _patches(
  x: jax.Array, window: Sequence[int], strides: Sequence[int], out_hw: Sequence[int]
) -> jax.Array:
  """[N, H, W, C] (already padded) -> [N, H', W', kh*kw*C], in the (kh, kw, C) order of an HWIO kernel."""
  (kh, kw), (sh, sw), (oh, ow) = window, strides, out_hw
  n, _, _, c = x.shape
  cols = [
    lax.slice(x, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, c), (1, sh, sw, 1))
    for i in range(kh)
    for j in range(kw)
  ]
  return jnp.stack(cols, axis=-2).reshape(n, oh, ow, kh * kw * c)


def conv_patches(x: jax.Array, window: Sequence[int], strides: Sequence[int], padding) -> jax.Array:
  """The rows a 2-D convolution multiplies: [N, H, W, C] -> [N, H', W', kh*kw*C] in the (kh, kw, C)
  order of an HWIO kernel, so `conv(x, k) == conv_patches(x, ...) @ k.reshape(-1, O)`."""
  x = _pad(x, jnp.zeros(tuple(window) + (1, 1)), strides, padding)
  out_hw = [(size - k) // s + 1 for size, k, s in zip(x.shape[1:3], window, strides)]
  return _patches(x, window, strides, out_hw)


def patches_conv(
  lhs: jax.Array,
  rhs: jax.Array,
  window_strides: Sequence[int],
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  batch_group_count: int = 1,
  precision=None,
  preferred_element_type=None,
) -> jax.Array:
  """`lax.conv_general_dilated` for 2-D NHWC x HWIO convolutions, as slices + one matmul.

  lhs: [N, H, W, C]; rhs: [kh, kw, C, O]; returns [N, H', W', O]. Strides and any padding
  (VALID, SAME, explicit pairs) are supported; dilations and feature groups are not (the
  zoo architectures use neither) and raise a ValueError.
  """
  _check_nhwc(
    lhs, rhs, dimension_numbers, lhs_dilation, rhs_dilation, feature_group_count, batch_group_count
  )
  lhs = _pad(lhs, rhs, window_strides, padding)
  kh, kw, c, o = rhs.shape
  out_hw = [(size - k) // s + 1 for size, k, s in zip(lhs.shape[1:3], (kh, kw), window_strides)]
  cols = _patches(lhs, (kh, kw), window_strides, out_hw)
  return lax.dot_general(
    cols,
    rhs.reshape(kh * kw * c, o),
    (((3,), (0,)), ((), ())),
    precision=precision,
    preferred_element_type=preferred_element_type,
  )


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pool, stride 2, VALID, as a reshape and a max: [..., H, W, C] -> [..., H//2, W//2, C].

  Same values as `flax.linen.max_pool`; its gradient is an elementwise mask, where
  reduce_window's is XLA's select-and-scatter, slow on CPU. At exact ties (equal inputs in a
  window) the gradient is shared among them instead of given to one; the parameter
  gradients are the same, because equal conv outputs come from equal patches.
  """
  h, w, c = x.shape[-3:]
  x = x[..., : h // 2 * 2, : w // 2 * 2, :]
  return x.reshape(x.shape[:-3] + (h // 2, 2, w // 2, 2, c)).max(axis=(-4, -2))


def _tap_slices(x: jax.Array, window, strides, out_hw) -> jax.Array:
  """[C, N, H, W] (padded) -> [kh*kw*C, N*H'*W']: one contiguous row block per kernel tap."""
  (kh, kw), (sh, sw), (oh, ow) = window, strides, out_hw
  c, n, h, _ = x.shape
  # Two passes of few, larger copies (kw column shifts, then kh row shifts of all of them)
  # rather than kh*kw small ones. Concatenated along C rather than stacked on a new axis:
  # under vmap the model axis then stays in front, and the final reshape moves no data.
  columns = jnp.concatenate(
    [lax.slice(x, (0, 0, 0, j), (c, n, h, j + (ow - 1) * sw + 1), (1, 1, 1, sw)) for j in range(kw)]
  )  # [kw*C, N, H, W'], (j, c) order
  taps = jnp.concatenate(
    [
      lax.slice(columns, (0, 0, i, 0), (kw * c, n, i + (oh - 1) * sh + 1, ow), (1, 1, sh, 1))
      for i in range(kh)
    ]
  )  # [kh*kw*C, N, H', W'], (i, j, c) order
  return taps.reshape(kh * kw * c, n * oh * ow)


def _untap(cols: jax.Array, shape, window, strides, out_hw) -> jax.Array:
  """The transpose of `_tap_slices`: [kh*kw*C, N*H'*W'] -> [C, N, H, W], the taps added back
  where they were read, in the same two passes (rows, then columns)."""
  (kh, kw), (sh, sw), (oh, ow) = window, strides, out_hw
  c, n, h, w = shape
  cols = cols.reshape(kh, kw * c, n, oh, ow)
  columns = jnp.zeros((kw * c, n, h, ow), cols.dtype)
  for i in range(kh):
    columns = columns.at[:, :, i : i + (oh - 1) * sh + 1 : sh].add(cols[i])
  columns = columns.reshape(kw, c, n, h, ow)
  total = jnp.zeros(shape, cols.dtype)
  for j in range(kw):
    total = total.at[..., j : j + (ow - 1) * sw + 1 : sw].add(columns[j])
  return total


def _varying(a: jax.Array) -> frozenset:
  """The shard_map mesh axes `a` varies over (empty outside shard_map)."""
  aval = jax.typeof(a)
  if hasattr(aval, "mat"):
    return frozenset(aval.mat.varying)
  return frozenset(getattr(aval, "vma", ()))  # JAX releases before manual axis types


def _varying_alike(*arrays: jax.Array) -> list[jax.Array]:
  """Inside shard_map, each array cast to vary over every mesh axis any of them varies over
  (images replicated to every device, kernels per device), so that the custom VJP's cotangents
  have their primals' types; the cast's own transpose sums a replicated input's cotangent."""
  axes = frozenset().union(*map(_varying, arrays))
  cast = lambda a, missing: (
    lax.pcast(a, missing, to="varying") if hasattr(lax, "pcast") else lax.pvary(a, missing)
  )
  return [cast(a, tuple(sorted(axes - _varying(a)))) if axes - _varying(a) else a for a in arrays]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _taps_matmul(x: jax.Array, kernel: jax.Array, window_strides, precision):
  return _taps_matmul_fwd(x, kernel, window_strides, precision)[0]


def _taps_matmul_fwd(x, kernel, window_strides, precision):
  kh, kw, c, o = kernel.shape
  n, h, w, _ = x.shape
  out_hw = [(size - k) // s + 1 for size, k, s in zip((h, w), (kh, kw), window_strides)]
  cols = _tap_slices(jnp.transpose(x, (3, 0, 1, 2)), (kh, kw), window_strides, out_hw)
  # [O, K] @ [K, N*H'*W']: both operands row-major in their contraction, XLA:CPU's fast form.
  out = lax.dot(kernel.reshape(kh * kw * c, o).T, cols, precision=precision)
  return jnp.transpose(out.reshape(o, n, *out_hw), (1, 2, 3, 0)), (cols, kernel, x.shape)


def _taps_matmul_bwd(window_strides, precision, residuals, grad):
  cols, kernel, (n, h, w, c) = residuals
  kh, kw, _, o = kernel.shape
  out_hw = grad.shape[1:3]
  grad = grad.reshape(-1, o)  # [N*H'*W', O], the NHWC layout as it comes
  d_kernel = lax.dot(cols, grad, precision=precision).reshape(kernel.shape)
  d_cols = lax.dot(kernel.reshape(kh * kw * c, o), grad.T, precision=precision)
  d_x = _untap(d_cols, (c, n, h, w), (kh, kw), window_strides, out_hw)
  return jnp.transpose(d_x, (1, 2, 3, 0)), d_kernel


_taps_matmul.defvjp(_taps_matmul_fwd, _taps_matmul_bwd)


def taps_conv(
  lhs: jax.Array,
  rhs: jax.Array,
  window_strides: Sequence[int],
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  batch_group_count: int = 1,
  precision=None,
  preferred_element_type=None,
) -> jax.Array:
  """`lax.conv_general_dilated` for 2-D NHWC x HWIO convolutions, channel-major inside.

  Like `patches_conv`, a vmapped convolution becomes batched matmuls; here the patches are
  laid out tap-major ([kh*kw*C, N*H'*W']: each tap a contiguous block, cheap to gather and
  to scatter back), and the forward product and both gradients are each written in the
  operand layout XLA:CPU multiplies fastest (a custom VJP). NHWC in and out.
  """
  _check_nhwc(
    lhs, rhs, dimension_numbers, lhs_dilation, rhs_dilation, feature_group_count, batch_group_count
  )
  lhs = _pad(lhs, rhs, window_strides, padding)
  out = _taps_matmul(*_varying_alike(lhs, rhs), tuple(window_strides), precision)
  return out if preferred_element_type is None else out.astype(preferred_element_type)


# conv_impl name -> the function Flax's Conv calls (None: Flax's default, lax.conv_general_dilated).
CONV_IMPLS: dict[str, Callable | None] = {"xla": None, "patches": patches_conv, "taps": taps_conv}
