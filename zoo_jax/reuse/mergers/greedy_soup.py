"""Greedy soup (Wortsman et al., 2022): models in order of validation accuracy, each kept if the
soup's validation accuracy does not drop."""

from typing import Any, Callable

import numpy as np

from zoo_jax.reuse import merging
from zoo_jax.reuse.mergers import Context, Merged


def soup(params: Any, val_acc: np.ndarray, evaluate: Callable[[Any], float]) -> list[int]:
  """Indices of the greedy soup: by validation accuracy, each kept if the soup's accuracy does not drop.
  `evaluate(model) -> accuracy` of one model."""
  order = np.argsort(-val_acc, kind="stable")
  members, best = [int(order[0])], float(val_acc[order[0]])
  for i in order[1:]:
    acc = evaluate(merging.mean(params, members + [int(i)]))
    if acc >= best:
      members, best = members + [int(i)], acc
  return members


def merge(context: Context) -> list[Merged]:
  members = soup(context.params, context.validation_acc, context.validation_of)
  return [Merged("greedy_soup", members, merging.mean(context.params, members))]
