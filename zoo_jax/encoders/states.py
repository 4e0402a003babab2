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

  def keys(self) -> pd.Series:
    """ "zoo/model_id" of each state: how an encoder records the models it held out."""
    return self.table["zoo"].astype(str) + "/" + self.table["model_id"].astype(str)

  def rows(self, keep: np.ndarray) -> "ZooStates":
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
  """Several zoos of one architecture as one set of states (name "a+b")."""
  if len({z.spec for z in zoos}) > 1:
    raise ValueError(
      "config.split.train_zoos pools zoos of different architectures; only method 'sne' "
      "reads mixed architectures, and it takes them as separate --zoo test sets."
    )
  return ZooStates(
    "+".join(z.name for z in zoos),
    pd.concat([z.table for z in zoos], ignore_index=True),
    np.concatenate([z.flat for z in zoos]),
    zoos[0].spec,
  )
