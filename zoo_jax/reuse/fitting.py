"""The small heads fitted on a zoo's outputs (Model Spider's fitness head, Model-GLUE's router): their
inputs standardised, their weights fitted full batch by AdamW in one jitted scan."""

from typing import Any, Callable

import jax
import numpy as np
import optax


def standardise(x: np.ndarray, fit: np.ndarray | None = None) -> np.ndarray:
  """z-scores of `x` per column with the mean and spread of `fit` (default `x`)."""
  fit = x if fit is None else fit
  return (x - fit.mean(0)) / (fit.std(0) + 1e-8)


def full_batch_adamw(
  loss_fn: Callable[[Any], jax.Array],
  params: Any,
  *,
  steps: int,
  learning_rate: float,
  weight_decay: float,
) -> Any:
  """`params` after `steps` AdamW steps on `loss_fn(params)` (the whole data inside it), one jitted scan."""
  tx = optax.adamw(learning_rate, weight_decay=weight_decay)

  @jax.jit
  def train(p):
    def step(carry, _):
      p, state = carry
      updates, state = tx.update(jax.grad(loss_fn)(p), state, p)
      return (optax.apply_updates(p, updates), state), None

    return jax.lax.scan(step, (p, tx.init(p)), None, length=steps)[0][0]

  return train(params)
