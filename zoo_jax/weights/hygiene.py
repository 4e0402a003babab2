"""Zoo hygiene: which model states are fit to train an encoder or a sampler on.

A zoo holds states that are "ok" (finite, not flagged diverged) and still useless as data:
models whose weights blew up (relu/gelu from U(0,1) init under SGD reach |w| ~ 1e3) without
ever going non-finite. A handful of them inflate every per-layer statistic (the layer-wise
loss normaliser grew 10-400x on this project's hyperparameter study zoo), so the good
models' weights become noise to the encoder. The reference code drops NaN states and states
above a weight threshold before training (HSG-AIML, 2021/2022); this is the same filter in a
scale-free form.

The rule: a state is dropped if any entry is non-finite, or if the RMS of any layer exceeds
`max_ratio` times that layer's median RMS over the states given (10 by default: a trained
tanh/kaiming layer moves its RMS by well under 3x, U(0,1) inits sit at about 2-5x a kaiming
one, blown-up layers at 50-10,000x). A fixed absolute threshold (`max_abs`) can be added.
"""

from typing import NamedTuple

import numpy as np

from zoo_jax.weights.flat import row_blocks
from zoo_jax.weights.spec import WeightSpec

DEFAULT_MAX_RATIO = 10.0


class StateFilter(NamedTuple):
  """Which states to keep, and why the others were dropped."""

  keep: np.ndarray  # bool [N]
  non_finite: np.ndarray  # bool [N]: some entry is NaN or inf
  blown_up: np.ndarray  # bool [N]: finite, but some layer's RMS (or |w|) is beyond the threshold
  layer_rms: np.ndarray  # float [N, L]: per-layer RMS of every state (NaN where non-finite)
  reference_rms: np.ndarray  # float [L]: per-layer median RMS over the finite states

  def summary(self, name: str = "zoo") -> str:
    """One line: how many states were kept and dropped, and why."""
    n = len(self.keep)
    return (
      f"{name}: kept {int(self.keep.sum())} of {n} states; dropped {int(self.non_finite.sum())} "
      f"non-finite and {int(self.blown_up.sum())} blown-up (a layer's RMS beyond the threshold)"
    )


def layer_rms(flat: np.ndarray, spec: WeightSpec) -> np.ndarray:
  """RMS of each layer's entries (kernel and bias together) per state: [N, L]."""
  flat = np.asarray(flat)
  if flat.ndim != 2 or flat.shape[1] != spec.size:
    raise ValueError(
      f"flat must have shape [N, {spec.size}] (weights.flatten vectors of this spec), "
      f"got {flat.shape}."
    )
  with np.errstate(over="ignore", invalid="ignore"):
    return np.stack(
      [
        np.sqrt(np.mean(np.square(flat[:, l.offset : l.offset + l.size], dtype=np.float64), axis=1))
        for l in spec.layers
      ],
      axis=1,
    )


def filter_states(
  flat: np.ndarray,
  spec: WeightSpec,
  *,
  max_ratio: float | None = DEFAULT_MAX_RATIO,
  max_abs: float | None = None,
) -> StateFilter:
  """Flags non-finite and blown-up states among `flat` [N, n] (weights.flatten vectors).

  Args:
    max_ratio: drop a state whose RMS in some layer exceeds max_ratio x that layer's median RMS
      over the finite states; None disables the rule.
    max_abs: drop a state with some |w| > max_abs; None (default) disables the rule.
  """
  if max_ratio is not None and not max_ratio > 1:
    raise ValueError(f"max_ratio must be > 1 or None, got {max_ratio!r}.")
  if max_abs is not None and not max_abs > 0:
    raise ValueError(f"max_abs must be > 0 or None, got {max_abs!r}.")
  # Per-state statistics over row blocks, so `flat` may be read on demand (streaming.StreamedFlat).
  rms, non_finite, largest = [], [], []
  for block in row_blocks(flat, spec):  # at least one block: an empty [0, n] has columns
    rms.append(layer_rms(block, spec))
    non_finite.append(~np.all(np.isfinite(block), axis=1))
    if max_abs is not None:
      with np.errstate(invalid="ignore"):
        largest.append(np.nanmax(np.abs(block), axis=1, initial=0.0))
  rms, non_finite = np.concatenate(rms), np.concatenate(non_finite)
  finite_rms = rms[~non_finite]
  reference = np.median(finite_rms, axis=0) if len(finite_rms) else np.full(rms.shape[1], np.nan)
  blown_up = np.zeros(len(non_finite), bool)
  if max_ratio is not None and len(finite_rms):
    blown_up |= np.any(rms > max_ratio * reference, axis=1)
  if max_abs is not None:
    blown_up |= np.concatenate(largest) > max_abs
  blown_up &= ~non_finite
  return StateFilter(
    keep=~(non_finite | blown_up),
    non_finite=non_finite,
    blown_up=blown_up,
    layer_rms=rms,
    reference_rms=reference,
  )
