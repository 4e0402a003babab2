"""The zoo on disk: write it epoch by epoch, resume it, read it back as a dataset.

    WORKDIR/
      config.json     the resolved config of the run
      models.csv      one row per model: model_id, cohort, cohort_index, seed, arch, hyperparameters
      metrics.csv     one row per (model, epoch): train/validation/test loss and accuracy, gap, status
      checkpoints/    Orbax, step = epoch (0 = initial weights), every epoch kept:
                      {cohort: {"params": [P, ...], "metrics": {name: [P]}}}, plus the model's
                      mutable collections ("batch_stats": [P, ...]) for BatchNorm models
      state/          Orbax, the last two epochs' full training state (params, optimizer, flags)

Tables are CSV: a few MB even for 1,000 models x 50 epochs, one line to open in pandas
(or R, or a spreadsheet), no extra dependency, and diffable. The checkpoint is the
source of truth: each step holds the epoch's metrics too, and metrics.csv is rewritten
atomically after the step is committed, so a reader never sees a table row whose
weights are missing. A dead run resumes from the newest intact `state/` step. The
checkpoints/ folder also keeps the config and the models table (Orbax root metadata, written
once), so every table is rebuilt from checkpoints/ alone: `Zoo` derives table rows that are
missing from the checkpoints (and says so), and refuses, naming the file, what it cannot
derive; `python -m zoo_jax.zoo check DIR [--repair]` verifies (and rewrites) everything.
One process writes a workdir at a time (zoo_jax.zoo.lock).

The package, by concern: files.py (names, atomic writes, checked reads), guard.py (the one
workdir guard of the commands: the lock first, what a run read, resume or refuse), store.py
(Orbax), tables.py (the tables, derived from and rebuilt from the checkpoints in one place),
writer.py (ZooWriter), reader.py (Zoo), checks.py (check / repair), share.py (slice / export),
lock.py (one writer per workdir); `python -m zoo_jax.zoo` is __main__.py.
"""

import importlib
from typing import Any

# The public names and the module of this package that defines each. They are imported on first
# use (PEP 562), so that `zoo_jax.zoo.lock` stays light: the commands take the workdir's lock before
# importing jax and Orbax (cli.lock_workdir_early).
_EXPORTS = {
  **dict.fromkeys(['Report', 'check'], "checks"),
  **dict.fromkeys(
    ['EXPORT_FORMAT', 'export', 'parse_epochs', 'parse_select', 'slice_zoo'], "share"
  ),
  **dict.fromkeys(
    [
      'CHECKPOINTS_DIR',
      'CONFIG_FILE',
      'METRICS_FILE',
      'METRIC_COLUMNS',
      'MODELS_FILE',
      'STATE_DIR',
      'ZOO_FILES',
      'STATUSES',
      'STATUS_DIVERGED',
      'STATUS_MISSING',
      'STATUS_OK',
      'as_stored',
      'clear',
      'differences',
      'read_json',
      'read_table',
      'write_json_atomic',
      'write_table_atomic',
    ],
    "files",
  ),
  **dict.fromkeys(['RUN_FILE', 'claim', 'read_models', 'read_record', 'writing'], "guard"),
  **dict.fromkeys(['Zoo'], "reader"),
  **dict.fromkeys(
    [
      'CHUNK_BYTES',
      'committed_epochs',
      'item_metadata',
      'open_cohorts',
      'open_manager',
      'read_cohorts',
      'read_rows',
      'restore_metrics',
      'restore_numpy',
      'store_metadata',
      'stored_metadata',
    ],
    "store",
  ),
  **dict.fromkeys(
    ['METRICS_TABLE_COLUMNS', 'MODELS_TABLE_COLUMNS', 'epoch_rows', 'metrics_rows'], "tables"
  ),
  **dict.fromkeys(['ZooWriter'], "writer"),
}
_SUBMODULES = ("checks", "files", "guard", "lock", "reader", "share", "store", "tables", "writer")
__all__ = [*_EXPORTS, *_SUBMODULES]


def __getattr__(name: str) -> Any:
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  if name not in _EXPORTS:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted(__all__)
