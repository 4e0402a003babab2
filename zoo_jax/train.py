"""Trains a model zoo: `python -m zoo_jax.train --config=configs/mnist5k.py --workdir=DIR`.

`train_and_evaluate(config, workdir)` is the whole job (a notebook calls it too): it
builds the population from the config's grid, trains every cohort one jitted epoch at a
time, and commits each epoch to the zoo store. Re-running the same command resumes a
dead run from its last complete epoch, or says the zoo is complete: every epoch's checkpoint
committed, and the tables equal to what the checkpoints say (it rewrites them if not). One
run writes a workdir at a time (zoo_jax.zoo.lock); a second is refused at once.
"""

if __name__ == "__main__":
  # The workdir's writer lock before the slow imports below (jax, orbax: seconds), so a second
  # run into a busy workdir is refused at once. Not in a multi-process run: there only process 0
  # holds it, and which one that is is known once jax.distributed has started (train_and_evaluate).
  import sys as _sys

  if not any(
    arg.lower() in ("--config.distributed=true", "--config.distributed=1") for arg in _sys.argv
  ):
    from zoo_jax import cli as _cli

    _cli.lock_workdir_early()

import contextlib
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd
from tqdm.auto import tqdm

from zoo_jax import data, models, zoo
from zoo_jax.engine import grid, population, sharding, train_config
from zoo_jax.zoo import lock

# The config's fields, their checks and the migration of stored configs (their home: train_config).
from zoo_jax.engine.train_config import stored_config, validate_config  # noqa: F401


def _subset(dataset: data.Dataset, size: int, seed: int, field: str = "train_size") -> data.Dataset:
  """A seeded random subset of `size` images (kept in dataset order), for small zoos and tests."""
  if size > len(dataset):
    raise ValueError(
      f"config.dataset.{field}={size} exceeds the {len(dataset)} {dataset.split} images of "
      f"{dataset.name!r}."
    )
  index = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:size])
  return dataset.take(index)


def _cohort_arrays(rows: pd.DataFrame, index: np.ndarray) -> dict[str, np.ndarray]:
  return {
    name: rows[name].to_numpy()[index]
    for name in ("seed", "init", "learning_rate", "weight_decay", "dropout")
  }


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  models_table: pd.DataFrame | None = None,
  initial_params: Callable[[pd.DataFrame], Any] | None = None,
) -> zoo.Zoo:
  """Trains (or resumes, or finds complete) the zoo that `config` describes, in `workdir`.

  By default the models are `config.population`'s grid, each starting from its own init.
  `models_table` replaces the grid (same columns, extra ones kept), and `initial_params(rows)`
  gives the starting weights [len(rows), ...] of a cohort's rows (e.g. sampled weights
  to fine-tune): zoo_jax.sample evaluates samples with the very engine that trains zoos.
  Holds the workdir's writer lock throughout; a workdir another process writes is refused.
  """
  validate_config(config)
  if config.distributed:  # before any other JAX call; see sharding.initialize for the environment
    sharding.initialize()
  # Process 0 writes the tables and config, and alone holds the writer lock; every process
  # writes its shards of the checkpoints.
  primary = sharding.is_primary()
  if primary:
    zoo.guard.make_workdir(workdir)
  sharding.barrier("zoo_jax:workdir_created")
  with lock.workdir_lock(workdir) if primary else contextlib.nullcontext():
    return _train_and_evaluate(config, workdir, models_table, initial_params, primary)


def _train_and_evaluate(config, workdir, models_table, initial_params, primary: bool) -> zoo.Zoo:
  profile = _Profile(config.get("profile", False))
  if models_table is None:
    models_table = grid.models_table(config.population, config.model.arch)
  rebuilt = False
  if (
    primary
  ):  # the guard (this config's zoo, or none), then an existing zoo's tables against checkpoints/
    rebuilt = train_config.check_workdir(config, workdir, models_table)
    if zoo.committed_epochs(workdir):
      rebuilt |= zoo.tables.repair_models(workdir, models_table, committed=True)
  sharding.barrier("zoo_jax:workdir_checked")
  epochs = zoo.committed_epochs(workdir)
  # Complete: every epoch's checkpoint committed, and the tables agree with them.
  if epochs and set(range(config.num_epochs + 1)) <= set(epochs):
    if primary:
      rebuilt |= zoo.tables.repair_metrics(workdir, models_table, epochs)
      print(
        f"Zoo in {workdir} is complete ({config.num_epochs} epochs); "
        + ("its tables were rebuilt from the checkpoints." if rebuilt else "nothing to do.")
      )
    sharding.barrier("zoo_jax:zoo_complete")
    return zoo.Zoo(workdir)

  ds = config.dataset
  splits = {
    split: data.load_as_zoo(ds, split, models.image_size(config.model.arch))
    for split in data.SPLITS
  }
  if ds.train_size is not None:
    splits["train"] = _subset(splits["train"], ds.train_size, ds.split_seed)
  if (
    ds.get("eval_size") is not None
  ):  # a smaller validation and test set: cheaper evaluation of big zoos
    for split in ("validation", "test"):
      splits[split] = _subset(
        splits[split], min(ds.eval_size, len(splits[split])), ds.split_seed, "eval_size"
      )
  train = splits["train"]
  # What the train_* metrics are computed on: the training set, or a fixed seeded subset of it.
  evaluated = dict(splits)
  if ds.get("train_eval_size") is not None:
    evaluated["train"] = _subset(
      train, min(ds.train_eval_size, len(train)), ds.split_seed, "train_eval_size"
    )
  if primary and not os.path.exists(os.path.join(workdir, zoo.CONFIG_FILE)):
    zoo.write_json_atomic(json.loads(config.to_json()), os.path.join(workdir, zoo.CONFIG_FILE))
  if primary and not epochs:  # a new zoo (or one stopped before its first epoch)
    zoo.tables.repair_models(workdir, models_table, committed=False)
  sharding.barrier("zoo_jax:tables_written")  # every process reads config.json next

  mesh = sharding.population_mesh(jax.devices() if config.shard else jax.devices()[:1])
  num_devices = mesh.devices.size
  on_mesh = {
    split: sharding.replicate((jnp.asarray(s.images), jnp.asarray(s.labels)), mesh)
    for split, s in evaluated.items()
  }
  on_mesh["train_all"] = (
    on_mesh["train"]
    if evaluated["train"] is train
    else sharding.replicate((jnp.asarray(train.images), jnp.asarray(train.labels)), mesh)
  )
  cohorts = grid.cohorts(models_table)
  schedule = population.Schedule(
    config.lr_schedule, config.num_epochs * (len(train) // config.batch_size)
  )
  augment = population.Augment(**ds.augment.to_dict())
  states, train_fns, eval_fns = {}, {}, {}
  eval_chunk = (
    config.models_per_vmap if config.eval_models_per_vmap is None else config.eval_models_per_vmap
  )
  for c, (cohort, rows) in enumerate(cohorts):
    padded = sharding.padded_index(len(rows), num_devices)
    index = padded[sharding.local_rows(len(padded), mesh)]  # this process builds only its rows
    arrays = _cohort_arrays(rows, index)
    params = None
    if initial_params is not None:
      params = jax.tree.map(lambda x: jnp.asarray(x)[index], initial_params(rows))
    states[c] = sharding.shard_models(
      population.create_population(
        cohort,
        arrays["seed"],
        arrays["init"],
        arrays["learning_rate"],
        arrays["weight_decay"],
        arrays["dropout"],
        train.image_shape,
        train.num_classes,
        params=params,
        schedule=schedule,
      ),
      mesh,
    )
    # Each device runs its own rows of the cohort (one device: the functions themselves).
    train_fns[c] = sharding.per_device(
      population.make_train_epoch(
        cohort,
        batch_size=config.batch_size,
        num_train=len(train),
        mean=train.mean,
        std=train.std,
        num_classes=train.num_classes,
        models_per_vmap=config.models_per_vmap,
        conv_impl=config.conv_impl,
        schedule=schedule,
        augment=augment,
      ),
      mesh,
    )
    eval_fns[c] = sharding.per_device(
      population.make_evaluate(
        cohort,
        batch_size=config.eval_batch_size,
        mean=train.mean,
        std=train.std,
        num_classes=train.num_classes,
        models_per_vmap=eval_chunk,
        conv_impl=config.conv_impl,
      ),
      mesh,
    )

  def evaluate(c, state):
    # The train split is evaluated too (eval mode, whole set) rather than averaged over the
    # epoch's steps: running means lag the weights and bias the generalisation gap.
    # All splits in one jitted call (one compilation per cohort).
    images, labels = ({split: on_mesh[split][i] for split in data.SPLITS} for i in (0, 1))
    per_split = profile("eval", eval_fns[c], state.params, images, labels, state.model_state)
    out = {}
    for split, m in per_split.items():
      out[f"{split}_loss"], out[f"{split}_acc"] = m.loss, m.accuracy
    return profile("to_host", sharding.to_host, out)

  metadata = zoo.store_metadata(zoo.read_json(os.path.join(workdir, zoo.CONFIG_FILE)), models_table)
  writer = profile("checkpoint", zoo.ZooWriter, workdir, metadata)
  abstract = {str(c): jax.tree.map(ocp.utils.to_shape_dtype_struct, s) for c, s in states.items()}
  restored = writer.restore_state(abstract)
  history = []
  if restored is None:
    start = 0
    metrics = {c: evaluate(c, s) for c, s in states.items()}
    profile("checkpoint", _commit, writer, 0, states, metrics)
    history.append(zoo.metrics_rows(models_table, 0, metrics, _diverged(states)))
  else:
    start, restored_states = restored
    states = {int(c): s for c, s in restored_states.items()}
    for epoch in range(start + 1):
      history.append(zoo.epoch_rows(models_table, epoch, writer.epoch_metrics(epoch)))
    if primary:
      print(f"Resuming the zoo in {workdir} after epoch {start}.")
  if primary:
    profile(
      "tables", zoo.write_table_atomic, pd.concat(history), os.path.join(workdir, zoo.METRICS_FILE)
    )
  profile.report("setup (data, init, epoch 0 or restore, first compiles)")

  steps_per_epoch = len(train) // config.batch_size
  started = time.time()
  bar = tqdm(
    total=config.num_epochs * len(models_table),
    initial=start * len(models_table),
    unit="model-epoch",
    desc="zoo",
    disable=not (config.progress_bar and primary),
    dynamic_ncols=True,
  )
  for epoch in range(start + 1, config.num_epochs + 1):
    epoch_start, metrics = time.time(), {}
    for c in states:
      states[c], _ = profile("train", train_fns[c], states[c], *on_mesh["train_all"])
      metrics[c] = evaluate(c, states[c])
      bar.update(len(cohorts[c][1]))
    profile("checkpoint", _commit, writer, epoch, states, metrics)
    history.append(zoo.metrics_rows(models_table, epoch, metrics, _diverged(states)))
    if primary:  # after the step is committed (ZooWriter.save waits for every process's shards)
      profile(
        "tables",
        zoo.write_table_atomic,
        pd.concat(history),
        os.path.join(workdir, zoo.METRICS_FILE),
      )
    profile.report(f"epoch {epoch}")
    last = history[-1]
    bar.set_postfix(
      epoch=epoch,
      test_acc_mean=f"{last['test_acc'].mean():.3f}",
      test_acc_best=f"{last['test_acc'].max():.3f}",
      model_steps_s=f"{len(models_table) * steps_per_epoch / (time.time() - epoch_start):.0f}",
      diverged=int((last["status"] == zoo.STATUS_DIVERGED).sum()),
    )
  bar.close()
  writer.close()
  sharding.barrier("zoo_jax:zoo_written")  # no process returns before process 0's last table
  if primary:
    print(summary(pd.concat(history), workdir, time.time() - started))
  return zoo.Zoo(workdir)


class _Profile:
  """Wall time per phase, printed per epoch when `config.profile` is True.

  `profile(phase, fn, *args)` calls fn; when profiling, it also waits for fn's device work
  (jax.block_until_ready), so each phase is charged its own time (and nothing overlaps).
  """

  def __init__(self, enabled: bool):
    self.enabled, self.seconds, self.started = bool(enabled), {}, time.perf_counter()

  def __call__(self, phase: str, fn: Callable, *args):
    if not self.enabled:
      return fn(*args)
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start
    return out

  def report(self, what: str) -> None:
    """Prints the phases since the last report (seconds) and starts a new period."""
    if not self.enabled:
      return
    now = time.perf_counter()
    total, seconds = now - self.started, self.seconds
    phases = "  ".join(f"{k} {v:.2f}" for k, v in seconds.items())
    tqdm.write(
      f"profile {what}: total {total:.2f} s | {phases} | other {total - sum(seconds.values()):.2f}"
    )
    self.seconds, self.started = {}, now


def _diverged(states) -> dict[int, np.ndarray]:
  return {c: sharding.to_host(s.diverged) for c, s in states.items()}


def _commit(writer: zoo.ZooWriter, epoch: int, states: dict, metrics: dict) -> None:
  per_cohort_metrics = {
    c: {**m, "diverged": sharding.to_host(states[c].diverged)} for c, m in metrics.items()
  }
  writer.save(
    epoch,
    {c: s.params for c, s in states.items()},
    per_cohort_metrics,
    {str(c): s for c, s in states.items()},
    {c: s.model_state for c, s in states.items()},
  )


def summary(metrics: pd.DataFrame, workdir: str, seconds: float) -> str:
  """A short text table: models, diverged, test accuracy quantiles of the last epoch, time, place."""
  last = metrics[metrics["epoch"] == metrics["epoch"].max()]
  acc = last["test_acc"].dropna()
  q = acc.quantile([0.0, 0.25, 0.5, 0.75, 1.0]) if len(acc) else pd.Series([np.nan] * 5)
  lines = [
    f"models            {len(last)}",
    f"epochs            {int(metrics['epoch'].max())}",
    f"diverged          {int((last['status'] == zoo.STATUS_DIVERGED).sum())}",
    "test accuracy     min {:.3f}  q25 {:.3f}  median {:.3f}  q75 {:.3f}  max {:.3f}".format(
      *q.to_numpy()
    ),
    f"wall time         {seconds:.1f} s (this run)",
    f"zoo               {os.path.abspath(workdir)}  (zoo_jax.zoo.Zoo(path) reads it)",
  ]
  return "\n".join(lines)


def cpu_xla_flags(config: ml_collections.ConfigDict, cores: int) -> list[str]:
  """The train command's default XLA flags for a host of `cores` usable CPU cores.

  One forced host device per core, so that `config.shard` runs a share of every cohort on
  each core (shard_map) instead of one program whose tiny batch-10 ops XLA cannot spread
  over the cores; each device single-threaded, so the cores are not oversubscribed. Only
  a device count that divides every cohort is used: then no cohort is padded, the stored
  training state has the shape of a one-device run, and a zoo resumes on any machine.
  Flags act on the CPU platform only; benchmarks/train_command.py measures them.
  """
  if not config.shard or cores < 2:
    return []
  sizes = [
    len(rows) for _, rows in grid.cohorts(grid.models_table(config.population, config.model.arch))
  ]
  devices = max(d for d in range(1, cores + 1) if all(size % d == 0 for size in sizes))
  if devices < 2:
    return []
  return [f"--xla_force_host_platform_device_count={devices}", "--xla_cpu_multi_thread_eigen=false"]


if __name__ == "__main__":
  from absl import flags
  from ml_collections import config_flags

  from zoo_jax import cli

  _CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a configs/*.py file.", lock_config=True
  )
  _WORKDIR = flags.DEFINE_string("workdir", None, "Where the zoo is written (and resumed from).")
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv):
    del argv
    # Before JAX starts its backends: XLA reads XLA_FLAGS once. A user's XLA_FLAGS wins.
    if "XLA_FLAGS" not in os.environ:
      try:
        validate_config(_CONFIG.value)
        os.environ["XLA_FLAGS"] = " ".join(
          cpu_xla_flags(_CONFIG.value, len(os.sched_getaffinity(0)))
        )
      except ValueError:
        pass  # train_and_evaluate reports it
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)

  cli.run(main)
