"""Populations as tables: a seed zoo or a hyperparameter grid, one row per model.

A model is fully described by its row (id, seed, hyperparameters), as in the Model
Zoos. Rows with the same static structure form a cohort, trained as one vmap.
"""

import itertools
from typing import Hashable, Sequence

import ml_collections
import numpy as np
import pandas as pd

from zoo_jax import models
from zoo_jax.engine.population import OPTIMIZERS, Cohort

# Grid fields, in the order rows are enumerated (the last varies fastest, then seeds).
GRID_FIELDS = ("activation", "dropout", "init", "optimizer", "learning_rate", "weight_decay")
_ALLOWED = {
  "activation": sorted(models.ACTIVATIONS),
  "init": sorted(models.INITS),
  "optimizer": list(OPTIMIZERS),
}
RANDOM_SEED_RANGE = 1_000_000  # tune.randint(0, 1000000) in the Model Zoos random-seed zoos
_NUMERIC = {"learning_rate": (0.0, None), "weight_decay": (0.0, None), "dropout": (0.0, 1.0)}


def validate_population(population: ml_collections.ConfigDict) -> None:
  """Raises a ValueError naming the field and allowed values for any bad grid entry."""
  if not isinstance(population.get("random_seeds", False), bool):
    raise ValueError(
      f"config.population.random_seeds must be True or False, got {population.random_seeds!r}."
    )
  if int(population.num_seeds) < 1:
    raise ValueError(f"config.population.num_seeds must be >= 1, got {population.num_seeds}.")
  grid = population.grid
  unknown = set(grid.keys()) - set(GRID_FIELDS)
  if unknown:
    raise ValueError(
      f"Unknown config.population.grid fields {sorted(unknown)}; allowed: {list(GRID_FIELDS)}."
    )
  for field in GRID_FIELDS:
    values = _values(grid, field)
    if not values:
      raise ValueError(f"config.population.grid.{field} is empty; give at least one value.")
    if field in _ALLOWED:
      bad = [v for v in values if v not in _ALLOWED[field]]
      if bad:
        raise ValueError(
          f"config.population.grid.{field} has unknown values {bad}; "
          f"allowed values: {_ALLOWED[field]}."
        )
    else:
      low, high = _NUMERIC[field]
      for v in values:
        if not isinstance(v, (int, float)) or v < low or (high is not None and v >= high):
          bound = f"in [{low}, {high})" if high is not None else f">= {low}"
          raise ValueError(f"config.population.grid.{field} value {v!r} must be a number {bound}.")


def models_table(population: ml_collections.ConfigDict, arch: str) -> pd.DataFrame:
  """One row per model: id, cohort, cohort_index, seed, arch and every grid field.

  Each grid setting (the product of the grid's value lists) gets seeds
  first_seed .. first_seed + num_seeds - 1, as the Model Zoos seed their zoos; with
  `population.random_seeds`, every model gets its own seed drawn from [0, 1,000,000)
  (the "random seed" zoos' tune.randint(0, 1000000) per trial), reproducibly from first_seed.
  """
  validate_population(population)
  settings = list(itertools.product(*(_values(population.grid, f) for f in GRID_FIELDS)))
  seeds = range(int(population.first_seed), int(population.first_seed) + int(population.num_seeds))
  rows = [dict(zip(GRID_FIELDS, setting), seed=seed) for setting in settings for seed in seeds]
  if population.get("random_seeds", False):
    drawn = np.random.default_rng(int(population.first_seed)).integers(
      0, RANDOM_SEED_RANGE, len(rows)
    )
    for row, seed in zip(rows, drawn):
      row["seed"] = int(seed)
  table = pd.DataFrame(rows)
  table.insert(0, "arch", arch)
  return index_models(table)[["model_id", "cohort", "cohort_index", "seed", "arch", *GRID_FIELDS]]


def index_models(table: pd.DataFrame, keys: Sequence[Hashable] | None = None) -> pd.DataFrame:
  """Numbers the rows of a models table (seed, arch and GRID_FIELDS columns, extra columns kept):
  model_id in row order, cohort ids in first-seen order, cohort_index within each cohort.

  keys: per row, the static structure that puts rows in one cohort (default: `cohort_of(row)`);
    an imported zoo passes its own (which also holds the input channels, e.g.). The one
    numbering of every zoo's models table: trained, sliced, sparsified or converted.
  """
  missing = [c for c in ("seed", "arch", *GRID_FIELDS) if c not in table.columns]
  if missing:
    raise ValueError(f"A models table needs the columns {missing}.")
  table = table.drop(
    columns=[c for c in ("model_id", "cohort", "cohort_index") if c in table.columns]
  )
  table = table.reset_index(drop=True)
  keys = [cohort_of(row) for _, row in table.iterrows()] if keys is None else list(keys)
  if len(keys) != len(table):
    raise ValueError(f"index_models: {len(keys)} cohort keys for {len(table)} rows.")
  cohort_ids = {key: i for i, key in enumerate(dict.fromkeys(keys))}
  cohort = pd.Series([cohort_ids[key] for key in keys], dtype=np.int64)
  table.insert(0, "model_id", np.arange(len(table)))
  table.insert(1, "cohort", cohort)
  table.insert(2, "cohort_index", cohort.groupby(cohort).cumcount().to_numpy())
  return table


def cohort_of(row) -> Cohort:
  """The static structure of a model row."""
  return Cohort(
    arch=row["arch"],
    activation=row["activation"],
    optimizer=row["optimizer"],
    use_dropout=bool(row["dropout"] > 0),
  )


def cohorts(table: pd.DataFrame) -> list[tuple[Cohort, pd.DataFrame]]:
  """(cohort, its rows in cohort_index order) for each cohort id, ascending."""
  return [
    (cohort_of(rows.iloc[0]), rows.sort_values("cohort_index"))
    for _, rows in table.groupby("cohort", sort=True)
  ]


def _values(grid, field) -> list:
  value = grid.get(field)
  if value is None:
    return []
  return list(value) if isinstance(value, (list, tuple)) else [value]
