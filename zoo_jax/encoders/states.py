"""A zoo's usable (model, epoch) states, as the weight-space methods read them.

`load_states(zoo_dir)` gives a `ZooStates`: the property table (properties.state_table) and the
flat weights (weights.flatten order), row for row, after the state filter
(weights.filter_states). Encoders (zoo_jax.encode) and samplers (zoo_jax.sample) read states
through it, so both see the same states.
"""

import dataclasses
from typing import Sequence

import numpy as np
import pandas as pd

from zoo_jax.encoders import properties, streaming
from zoo_jax import weights
from zoo_jax import zoo as zoo_lib


@dataclasses.dataclass
class ZooStates:
  """The usable states of one zoo: their table and their weights, row for row."""

  name: str
  table: pd.DataFrame
  flat: (
    np.ndarray
  )  # [N, n] float32, in weights.flatten order (or a streaming.StreamedFlat read on demand)
  spec: weights.WeightSpec
  hygiene: str = ""  # what the state filter kept and dropped (weights.filter_states), one line
  cache: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, compare=False, repr=False)
  # A pool of several architectures (`pool`): its blocks of one architecture each, whose tables
  # are `table`'s rows in order; `flat` and `spec` are then None (read each block's).
  parts: tuple["ZooStates", ...] = ()

  def keys(self) -> pd.Series:
    """ "zoo/model_id" of each state: how an encoder records the models it held out."""
    return self.table["zoo"].astype(str) + "/" + self.table["model_id"].astype(str)

  def blocks(self) -> tuple["ZooStates", ...]:
    """The states by architecture: the parts of a mixed pool, else the states themselves."""
    return self.parts or (self,)

  def rows(self, keep: np.ndarray) -> "ZooStates":
    if self.parts:
      bounds = np.cumsum([0] + [len(p.table) for p in self.parts])
      parts = [p.rows(keep[a:b]) for p, a, b in zip(self.parts, bounds[:-1], bounds[1:])]
      return _mixed(self.name, [p for p in parts if len(p.table)])
    flat = (
      self.flat.rows(keep) if isinstance(self.flat, streaming.StreamedFlat) else self.flat[keep]
    )
    return ZooStates(
      self.name, self.table[keep].reset_index(drop=True), flat, self.spec, self.hygiene
    )


def load_states(
  workdir: str,
  epochs: Sequence[int] | None = None,
  *,
  max_ratio: float | None = weights.hygiene.DEFAULT_MAX_RATIO,
  max_abs: float | None = None,
  stream: bool = False,
  buffer_mb: float = 64.0,
) -> ZooStates:
  """Reads every usable (model, epoch) state of a zoo: the property table and flat weights.

  Usable: status "ok" (properties.state_table) and passing `weights.filter_states` (finite, no
  blown-up layer; `max_ratio` and `max_abs` as there), so encoders and samplers see the same
  states. `ZooStates.hygiene` says how many were dropped. With `stream`, the weights stay on
  disk (streaming.StreamedFlat, a shuffle buffer of `buffer_mb` MB) for zoos larger than memory.
  """
  zoo = zoo_lib.Zoo(workdir)
  table = properties.state_table(zoo, epochs)
  if not len(table):
    zoo.close()
    raise ValueError(
      f"Zoo {workdir} has no usable state at epochs {'all' if epochs is None else list(epochs)}: "
      "every model there diverged or is missing (status column of its metrics.csv)."
    )
  if stream:
    flat = streaming.StreamedFlat(zoo, table, buffer_mb)
    spec = flat.spec
  else:
    flats, spec = [], None
    for epoch, rows in table.groupby(
      "epoch", sort=True
    ):  # the table is sorted by (epoch, model_id)
      vector, spec = weights.flatten(zoo.params(rows["model_id"].to_numpy(), epoch))
      flats.append(np.asarray(vector, np.float32))
    zoo.close()
    flat = np.concatenate(flats)
  name = table["zoo"].iloc[0]
  checked = weights.filter_states(flat, spec, max_ratio=max_ratio, max_abs=max_abs)
  states = ZooStates(name, table, flat, spec, checked.summary(name))
  if not checked.keep.any():
    raise ValueError(f"{states.hygiene}: no usable state is left in {workdir}.")
  return states.rows(checked.keep)


def pool(zoos: Sequence[ZooStates]) -> ZooStates:
  """Several zoos as one set of states (name "a+b"); zoos of different architectures give a
  mixed pool (`ZooStates.parts`, one block per architecture), which only the methods that read
  mixed architectures (SNE, StatNN) train on."""
  name = "+".join(z.name for z in zoos)
  by_spec: dict = {}
  for z in zoos:
    by_spec.setdefault(z.spec, []).append(z)
  blocks = [
    group[0]
    if len(group) == 1
    else ZooStates(
      "+".join(z.name for z in group),
      pd.concat([z.table for z in group], ignore_index=True),
      np.concatenate([z.flat for z in group]),
      spec,
    )
    for spec, group in by_spec.items()
  ]
  return _mixed(name, blocks)


def _mixed(name: str, blocks: Sequence[ZooStates]) -> ZooStates:
  """One block as it is (renamed), several as a mixed pool."""
  if len(blocks) == 1:
    return dataclasses.replace(blocks[0], name=name, cache={})
  table = pd.concat([b.table for b in blocks], ignore_index=True)
  return ZooStates(name, table, None, None, parts=tuple(blocks))
