"""The train command's config: its fields, their checks, and stored configs read back.

`validate_config` checks a config once, early (errors name the field and the allowed values).
`stored_config(zoo_dir)` is the config a zoo was trained with (its config.json), completed with
the fields added since it was written (`_LATER_FIELDS`: add a field there when you add one to
`_FIELDS` with a default other zoos were not trained with), so it validates and drives another
run: fine-tuning samples (zoo_jax.sample), merging, fine-tuned zoos.
"""

import json
import os
import warnings

import ml_collections
import pandas as pd

from zoo_jax import data, errors, models, zoo
from zoo_jax.engine import grid, population
from zoo_jax.models.fast_conv import CONV_IMPLS

# Fields a config may carry (sections map to their allowed sub-fields).
_FIELDS = {
  "dataset": {
    "name",
    "source",
    "data_dir",
    "split_seed",
    "train_size",
    "eval_size",
    "preprocess",
    "train_eval_size",
    "augment",
    "domains",
  },
  "model": {"arch"},
  "population": {"num_seeds", "first_seed", "random_seeds", "grid"},
  "num_epochs": None,
  "batch_size": None,
  "eval_batch_size": None,
  "shard": None,
  "models_per_vmap": None,
  "eval_models_per_vmap": None,
  "conv_impl": None,
  "overwrite": None,
  "progress_bar": None,
  "profile": None,
  "distributed": None,
  "lr_schedule": None,
}
# Fields that may change between runs into one workdir without making it another zoo.
# `distributed` is how the run is spread, not what it trains: a zoo begun on one host may continue
# on several (with the same total device count: the cohorts' padding depends on it).
RESUMABLE_CHANGES = {
  "overwrite",
  "num_epochs",
  "progress_bar",
  "eval_batch_size",
  "models_per_vmap",
  "eval_models_per_vmap",
  "conv_impl",
  "profile",
  "distributed",
}


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks every field once, early; errors name the field and the allowed values."""
  unknown = set(config.keys()) - set(_FIELDS)
  if unknown:
    raise ValueError(f"Unknown config fields {sorted(unknown)}; allowed: {sorted(_FIELDS)}.")
  for section, fields in _FIELDS.items():
    if section not in config:
      raise ValueError(f"config.{section} is missing.")
    if fields is not None:
      unknown = set(config[section].keys()) - fields
      if unknown:
        raise ValueError(
          f"Unknown config.{section} fields {sorted(unknown)}; allowed: {sorted(fields)}."
        )
  ds = config.dataset
  if ds.name not in data.DATASETS:
    raise ValueError(
      f"config.dataset.name {ds.name!r} is unknown; allowed values: {sorted(data.DATASETS)}."
    )
  if ds.source not in data.DATASETS[ds.name].sources:
    raise ValueError(
      f"config.dataset.source {ds.source!r} is not available for {ds.name!r}; "
      f"allowed values: {list(data.DATASETS[ds.name].sources)}."
    )
  if ds.get("domains"):
    from zoo_jax.data import domains

    domains.check(ds.domains, "config.dataset.domains", image_shape_of=ds.name)
  data.resolve(ds.name, ds.get("preprocess"))  # each preprocess field, and mean / std per channel
  if config.model.arch not in models.ARCHITECTURES:
    raise ValueError(
      f"config.model.arch {config.model.arch!r} is unknown; "
      f"allowed values: {sorted(models.ARCHITECTURES)}."
    )
  for field, low in (
    ("num_epochs", 0),
    ("batch_size", 1),
    ("eval_batch_size", 1),
    ("models_per_vmap", 0),
  ):
    if not isinstance(config[field], int) or config[field] < low:
      raise ValueError(f"config.{field} must be an integer >= {low}, got {config[field]!r}.")
  eval_chunk = config.eval_models_per_vmap
  if eval_chunk is not None and (
    not isinstance(eval_chunk, int) or isinstance(eval_chunk, bool) or eval_chunk < 0
  ):
    raise ValueError(
      f"config.eval_models_per_vmap must be None (as models_per_vmap) or an integer >= 0, "
      f"got {eval_chunk!r}."
    )
  if config.conv_impl not in CONV_IMPLS:
    raise ValueError(
      f"config.conv_impl {config.conv_impl!r} is unknown; allowed values: {list(CONV_IMPLS)}."
    )
  if ds.train_size is not None and (
    not isinstance(ds.train_size, int) or ds.train_size < config.batch_size
  ):
    raise ValueError(
      f"config.dataset.train_size must be None (all) or an integer >= config.batch_size "
      f"({config.batch_size}), got {ds.train_size!r}."
    )
  eval_size = ds.get("eval_size")
  if eval_size is not None and (not isinstance(eval_size, int) or eval_size < 1):
    raise ValueError(
      f"config.dataset.eval_size must be None (all) or a positive integer, got {eval_size!r}."
    )
  train_eval_size = ds.get("train_eval_size")
  if train_eval_size is not None and (not isinstance(train_eval_size, int) or train_eval_size < 1):
    raise ValueError(
      f"config.dataset.train_eval_size must be None (all) or a positive integer, "
      f"got {train_eval_size!r}."
    )
  if config.lr_schedule not in population.LR_SCHEDULES:
    raise ValueError(
      f"config.lr_schedule {config.lr_schedule!r} is unknown; allowed values: "
      f"{list(population.LR_SCHEDULES)}."
    )
  augment = ds.augment
  unknown = set(augment.keys()) - set(population.Augment._fields)
  if unknown:
    raise ValueError(
      f"Unknown config.dataset.augment fields {sorted(unknown)}; allowed: "
      f"{list(population.Augment._fields)}."
    )
  if (
    not isinstance(augment.crop_padding, int)
    or isinstance(augment.crop_padding, bool)
    or augment.crop_padding < 0
  ):
    raise ValueError(
      f"config.dataset.augment.crop_padding must be an integer >= 0, got {augment.crop_padding!r}."
    )
  if not isinstance(augment.horizontal_flip, bool):
    raise ValueError(
      f"config.dataset.augment.horizontal_flip must be True or False, got {augment.horizontal_flip!r}."
    )
  if (
    not isinstance(augment.rotation, (int, float))
    or isinstance(augment.rotation, bool)
    or not 0 <= augment.rotation <= 180
  ):
    raise ValueError(
      f"config.dataset.augment.rotation must be degrees in [0, 180], got {augment.rotation!r}."
    )
  if not isinstance(config.distributed, bool):
    raise ValueError(f"config.distributed must be True or False, got {config.distributed!r}.")
  if config.distributed and not config.shard:
    raise ValueError(
      "config.distributed=True needs config.shard=True: the model axis is what is spread "
      "over the processes."
    )
  grid.validate_population(config.population)


# Fields added after zoos were first written, with the value those zoos were trained with.
_LATER_FIELDS = {
  ("dataset", "eval_size"): None,
  ("conv_impl",): "xla",
  ("dataset", "preprocess"): {field: None for field in data.PREPROCESS_FIELDS},
  ("population", "random_seeds"): False,
  ("dataset", "train_eval_size"): None,
  ("profile",): False,
  ("distributed",): False,
  ("lr_schedule",): "constant",
  ("eval_models_per_vmap",): None,
  ("dataset", "augment"): {"crop_padding": 0, "horizontal_flip": False, "rotation": 0.0},
  ("dataset", "domains"): None,
}


def with_later_fields(stored: dict) -> dict:
  """A stored config.json completed with the fields added since it was written."""
  for path, value in _LATER_FIELDS.items():
    section = stored
    for name in path[:-1]:
      section = section.setdefault(name, {})
    section.setdefault(path[-1], value)
  return stored


def stored_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a zoo was trained with (its config.json), completed with later fields' defaults,
  so it validates and can drive another run (e.g. fine-tuning samples on the zoo's data)."""
  return ml_collections.ConfigDict(
    with_later_fields(zoo.read_json(os.path.join(workdir, zoo.CONFIG_FILE)))
  )


def check_workdir(
  config: ml_collections.ConfigDict, workdir: str, models_table: pd.DataFrame | None = None
) -> bool:
  """Checks that the zoo in the workdir, if any, was made by this config (config.json, or the
  copy kept in checkpoints/, which also rewrites a lost or damaged config.json: returns True) and,
  once an epoch is committed, of these models (`models_table` against the copy kept in
  checkpoints/: a run given its own models, as sample and merge do, has the same config for other
  models). Another zoo is refused in one line, or deleted with config.overwrite."""
  path = os.path.join(workdir, zoo.CONFIG_FILE)
  rewrote = False
  if not os.path.exists(path) and not zoo.committed_epochs(workdir):
    return rewrote
  try:
    old = zoo.read_json(path)
  except errors.DamagedZoo as error:
    old = zoo.stored_metadata(workdir).get("config")
    if old is None and not config.overwrite:
      raise errors.DamagedZoo(
        f"{error} It records the config this zoo was trained with, and checkpoints/ keeps "
        "no copy (older zoo_jax): restore it, or pass --config.overwrite=True to delete "
        "this zoo and start over."
      ) from None
    if old is not None:
      zoo.write_json_atomic(old, path)
      print(f"Rewrote {path} from the copy kept in checkpoints/ ({error})")
      rewrote = True
    else:
      old = {}
  if old:
    old = with_later_fields(old)
  new = json.loads(config.to_json())
  # A one-cycle schedule spans num_epochs: more epochs would be another schedule, another zoo.
  fixed = {"num_epochs"} if new.get("lr_schedule", "constant") != "constant" else set()
  changed = sorted(
    k for k in zoo.differences(old, new) if k.split(".")[0] not in RESUMABLE_CHANGES - fixed
  )
  if not changed and models_table is not None and zoo.committed_epochs(workdir):
    kept = zoo.tables.stored_models(zoo.stored_metadata(workdir))
    if kept is not None and not kept.equals(zoo.as_stored(models_table)):
      changed = [
        f"the models table ({len(kept)} models kept in checkpoints/, {len(models_table)} given)"
      ]
  if changed and not config.overwrite:
    raise ValueError(
      f"Workdir {workdir!r} holds a zoo made with a different config (fields {changed} differ). "
      "Use another --workdir, or pass --config.overwrite=True to delete that zoo and start over."
    )
  if changed:
    warnings.warn(f"Overwriting the zoo in {workdir} (fields {changed} changed).")
    zoo.clear(workdir)
  return rewrote
