"""`check`: a zoo verified against its checkpoints, and what can be rebuilt exactly, rebuilt."""

import dataclasses
import os
from typing import Any

import jax
import numpy as np
import pandas as pd

from zoo_jax import errors
from zoo_jax.zoo.files import (
  CHECKPOINTS_DIR,
  CONFIG_FILE,
  METRICS_FILE,
  MODELS_FILE,
  STATE_DIR,
  STATUS_OK,
  as_stored,
  read_json,
  read_table,
  write_json_atomic,
  write_table_atomic,
)
from zoo_jax.zoo.store import open_manager, read_stored, restore_numpy
from zoo_jax.zoo.tables import (
  METRICS_TABLE_COLUMNS,
  MODELS_TABLE_COLUMNS,
  checked_models,
  stored_models,
  difference,
  epoch_rows,
)
from zoo_jax.zoo import lock


@dataclasses.dataclass
class Report:
  """What `check` found: one line per part of the zoo, the problems left, the files rewritten."""

  workdir: str
  lines: list[str] = dataclasses.field(default_factory=list)
  problems: list[str] = dataclasses.field(default_factory=list)
  repaired: list[str] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    return not self.problems

  def __str__(self) -> str:
    out = [f"zoo check {self.workdir}", *(f"  {line}" for line in self.lines)]
    out += [f"repaired: {r}" for r in self.repaired]
    out += [f"PROBLEM: {p}" for p in self.problems]
    out.append("result: ok" if self.ok else f"result: {len(self.problems)} problem(s)")
    return "\n".join(out)


def check(workdir: str, repair: bool = False) -> Report:
  """Verifies a zoo against its checkpoints: every step's arrays open and are finite where the
  status is ok, config.json and models.csv equal the copies in checkpoints/, metrics.csv equals
  the rows derived from the steps. `repair` rewrites, under the writer lock, the files that can
  be rebuilt exactly (from checkpoints/ alone)."""
  if not os.path.isdir(os.path.join(workdir, CHECKPOINTS_DIR)):
    raise errors.UsageError(f"{workdir!r} is not a zoo: it has no {CHECKPOINTS_DIR}/ folder.")
  if repair:
    with lock.workdir_lock(workdir):
      return _check(workdir, True)
  return _check(workdir, False)


def _check(workdir: str, repair: bool) -> Report:
  report = Report(workdir)
  holder = lock.holder(workdir)
  if holder and not repair:
    report.lines.append(
      f"writer        pid {holder.get('pid')} on {holder.get('host')!r} is writing this zoo "
      "now; newer epochs may be in flight"
    )
  with open_manager(os.path.join(workdir, CHECKPOINTS_DIR), create=False) as manager:
    stored = read_stored(manager)
    if not stored:
      report.lines.append(
        "metadata      checkpoints/ keeps no config or models table (older zoo_jax): "
        "config.json and models.csv are checked for shape only"
      )

    def kept(name: str, read: Any, expected: Any, write: Any, describe: str) -> Any:
      path = os.path.join(workdir, name)
      try:
        value = read(path)
        if expected is None or (
          value.equals(expected) if hasattr(value, "equals") else value == expected
        ):
          report.lines.append(f"{name:<13} {describe.format(value=value)}: ok")
          return value
        problem = f"{path} differs from the copy kept in checkpoints/."
      except errors.DamagedZoo as error:
        problem = str(error)
      if expected is None:
        report.problems.append(
          f"{problem} It cannot be rebuilt from checkpoints/ (older zoo): restore it, or run "
          "the command that wrote the zoo again."
        )
        return None
      if repair:
        write(expected, path)
        report.repaired.append(f"{path} rewritten from checkpoints/ ({problem})")
      else:
        report.problems.append(f"{problem} --repair rewrites it from checkpoints/ (exact).")
      return expected

    config = kept(
      CONFIG_FILE, read_json, stored.get("config"), write_json_atomic, "resolved config"
    )
    expected_models = stored_models(stored)
    models = kept(
      MODELS_FILE,
      lambda p: checked_models(read_table(p, MODELS_TABLE_COLUMNS), p, {}),
      expected_models,
      write_table_atomic,
      "{value.shape[0]} models",
    )
    if models is None:
      return report

    epochs = sorted(manager.all_steps())
    derived, unreadable = [], []
    for epoch in epochs:
      step = os.path.join(workdir, CHECKPOINTS_DIR, str(epoch))
      try:
        tree = restore_numpy(manager, epoch)
      except ValueError as error:
        unreadable.append(epoch)
        report.problems.append(
          f"{step} is unreadable ({str(error.__cause__ or error)[:160]}). Delete that folder "
          "and run the train command again: it trains the newest epoch again from "
          "state/; an older one needs the zoo trained again."
        )
        continue
      rows = epoch_rows(models, epoch, {c: v["metrics"] for c, v in tree.items()})
      status = rows.set_index("model_id")["status"]
      for cohort, group in models.groupby("cohort"):
        params = tree.get(str(cohort), {}).get("params")
        if params is None:
          report.problems.append(f"{step} has no weights for cohort {cohort} of {MODELS_FILE}.")
          continue
        leaves = [np.asarray(x) for x in jax.tree.leaves(params)]
        index = group["cohort_index"].to_numpy()
        if any(len(x) <= index.max() for x in leaves):
          report.problems.append(
            f"{step} holds fewer models of cohort {cohort} than {MODELS_FILE} lists."
          )
          continue
        finite = np.all(
          [np.isfinite(x[index].reshape(len(index), -1)).all(axis=1) for x in leaves], axis=0
        )
        bad = group["model_id"].to_numpy()[
          ~finite & (status.loc[group["model_id"]] == STATUS_OK).to_numpy()
        ]
        if bad.size:
          report.problems.append(
            f"{step} has non-finite weights for models {bad[:10].tolist()} whose status is ok."
          )
      derived.append(rows)
    gaps = [] if not epochs else sorted(set(range(epochs[0], epochs[-1] + 1)) - set(epochs))
    if gaps and "population" in (config or {}):  # a trained zoo has every epoch
      report.problems.append(
        f"{os.path.join(workdir, CHECKPOINTS_DIR)} lacks the steps of epochs {gaps}; middle "
        "epochs cannot be rebuilt without training the zoo again."
      )
    span = (
      f"epochs {epochs[0]}..{epochs[-1]} ({len(epochs)} steps)" if epochs else "no committed epoch"
    )
    report.lines.append(
      f"{CHECKPOINTS_DIR + '/':<13} {span}; {len(epochs) - len(unreadable)} open, finite where "
      "the status is ok"
    )
    if (
      isinstance((config or {}).get("num_epochs"), int)
      and epochs
      and epochs[-1] < config["num_epochs"]
    ):
      report.lines.append(
        f"{'':<13} unfinished: config.num_epochs is {config['num_epochs']}; the train command "
        "continues it"
      )

    path = os.path.join(workdir, METRICS_FILE)
    expected = (
      as_stored(pd.concat(derived, ignore_index=True)[list(METRICS_TABLE_COLUMNS)])
      if derived
      else pd.DataFrame(columns=list(METRICS_TABLE_COLUMNS))
    )
    try:
      table = read_table(path, METRICS_TABLE_COLUMNS)[list(METRICS_TABLE_COLUMNS)]
      if unreadable:
        table = table[~table["epoch"].isin(unreadable)].reset_index(drop=True)
      problem = (
        None
        if table.equals(expected)
        else f"{path} disagrees with the checkpoints: {difference(table, expected)}."
      )
    except errors.DamagedZoo as error:
      problem = str(error)
    if problem is None:
      report.lines.append(
        f"{METRICS_FILE:<13} {len(expected)} rows, equal to the metrics in the checkpoints: ok"
      )
    elif repair and not unreadable:
      write_table_atomic(expected, path)
      report.repaired.append(f"{path} rewritten from the checkpoints ({problem})")
    else:
      why = (
        "--repair rewrites it from the checkpoints (exact)."
        if not unreadable
        else ("it is rebuilt once every step is readable.")
      )
      report.problems.append(f"{problem} {why}")

    state_dir = os.path.join(workdir, STATE_DIR)
    if os.path.isdir(state_dir):
      with open_manager(state_dir, create=False) as state:
        report.lines.append(
          f"{STATE_DIR + '/':<13} training state of epochs {sorted(state.all_steps())}"
        )
  return report
