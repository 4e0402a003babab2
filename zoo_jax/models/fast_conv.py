"""Convolutions as patches + matmul, for populations vmapped over per-model kernels on CPU.

`jax.vmap` of `lax.conv_general_dilated` over a batched kernel becomes one grouped
convolution (`feature_group_count = models`), and XLA:CPU runs grouped convolutions, above
all their kernel gradients, far below its matmul rate. Written as patch extraction (strided
slices: pure data movement) and one matmul, a vmapped convolution is a *batched*
dot_general over the model axis instead, and so are its two gradients (patches^T @ grad for
the kernel, grad @ kernel^T for the patches, whose transpose back to the image is a sum of
padded slices). Same function as `lax.conv_general_dilated`; float sums are ordered
differently (~1e-6 relative).

`CONV_IMPLS[name]` is a drop-in for flax.linen.Conv's `conv_general_dilated` attribute, so
the Flax module stays the single definition of each architecture. `max_pool_2x2` is the
matching pool: a reshape and a max, whose gradient is a mask rather than select-and-scatter.
"""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

# Flax's Conv always asks for channels-last: NHWC inputs, HWIO kernels, NHWC outputs.
_NHWC = ("NHWC", "HWIO", "NHWC")


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
  expected = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  if (
    lhs.ndim != 4 or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != expected
  ):
    raise ValueError(
      f"patches_conv supports 2-D NHWC/HWIO/NHWC convolutions only, got {dimension_numbers}."
    )
  if (
    any(d not in (None, 1) for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
    or feature_group_count != 1
    or batch_group_count != 1
  ):
    raise ValueError(
      "patches_conv does not support dilations or feature/batch groups; use conv_impl='xla'."
    )
  kh, kw, c, o = rhs.shape
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), window_strides, padding)
  if any(p != (0, 0) for p in map(tuple, padding)):
    lhs = jnp.pad(lhs, ((0, 0), *map(tuple, padding), (0, 0)))
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


# conv_impl name -> the function Flax's Conv calls (None: Flax's default, lax.conv_general_dilated).
CONV_IMPLS: dict[str, Callable | None] = {"xla": None, "patches": patches_conv}
