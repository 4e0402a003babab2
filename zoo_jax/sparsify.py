"""Sparsified twins: variational dropout sparsification of a zoo's last-epoch models.

As the Model Zoos' sparsified zoos (code/model_definitions/def_net_distillation.py, after
Molchanov et al., 2017, "Variational Dropout Sparsifies Deep Neural Networks"): every weight w
gets a variance parameter log sigma^2 (initialised to -10); log alpha = log sigma^2 - log w^2,
clamped to [-8, 8] for convolutions and [-10, 10] for linear layers. Training minimises
cross-entropy + kl_weight * KL, with the KL approximation
-KL = k1 sigmoid(k2 + k3 log alpha) - 0.5 log1p(exp(-log alpha)) - k1 (k1, k2, k3 = 0.63576,
1.8732, 1.48695) summed over all weights (and convolution biases), kl_weight = min(1,
kl_max * epoch / epochs) and kl_max = 1e-2; the forward pass in training uses the local
reparameterisation trick (a Gaussian on each pre-activation). Evaluation zeroes every weight
with log alpha >= threshold (3); the sparsity of a model is the fraction of its weights (not
biases) zeroed. The optimizer is the source model's (Adam or SGD, its lr and weight decay).

The twin is a zoo written through `zoo.ZooWriter`: `params` are the trained weights (unclipped,
as the published CNN_ARD checkpoints), the `log_sigma2` collection beside them
(`Zoo.variables()`), and the metrics table carries a `sparsity` column per model and epoch;
epoch 0 is the source model itself (log sigma^2 at its initial value). `variational.deployed(params,
log_sigma2)` gives the sparse weights that the zoo's architecture runs as is.

A twin run commits every epoch with its training state (zoo.ZooWriter, as training does): the
same command into the same workdir resumes a killed run after its last complete epoch, to the
twin an uninterrupted run writes (every model's noise and batch order come from its seed and the
epoch), or leaves a complete twin as it is; a workdir holding another twin (another source,
selection or config) is refused. One run writes a workdir at a time (zoo_jax.zoo.lock).

  python -m zoo_jax.sparsify --config=configs/sparsify.py --zoo=SOURCE_ZOO --workdir=TWIN
"""

if __name__ == "__main__":
  # The workdir's writer lock before the slow imports below (jax, orbax: seconds).
  from zoo_jax import cli as _cli

  _cli.lock_workdir_early()

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pandas as pd

from zoo_jax import data, models, zoo
from zoo_jax.engine import grid, variational
from zoo_jax.zoo import guard


def sparsify_zoo(
  config: ml_collections.ConfigDict, source: str, workdir: str, model_ids: Any = None
) -> zoo.Zoo:
  """Sparsifies the last-epoch models of the zoo in `source` (all, or `model_ids`, e.g. from
  `Zoo.select`) for config.num_epochs epochs into a twin zoo; `source_model` names each twin's model.
  Resumes a killed run into the same workdir (see the module docstring)."""
  with guard.writing(workdir):  # the lock first, as every writing command
    src = zoo.Zoo(source)
    try:
      arch = src.config["model"]["arch"]
      if arch not in variational.ARCHS:
        raise ValueError(
          f"Sparsified twins exist for {list(variational.ARCHS)}; the zoo in {source!r} is {arch!r}."
        )
      chosen = (
        src.models
        if model_ids is None
        else src.models.set_index("model_id").loc[src._model_ids(model_ids)].reset_index()
      )
      models_table = grid.index_models(chosen.rename(columns={"model_id": "source_model"}))
      source_epoch = src.epochs[-1]
      models_table["source_epoch"] = source_epoch
      ds = src.config["dataset"]
      read = guard.read_models(src, models_table["source_model"], [source_epoch])
      print(f"read {guard.describe([read])}")
      twin_config = {
        "source": os.path.abspath(source),
        "source_config": src.config,
        "sparsify": config.to_dict(),
        "dataset": ds,
        "model": {"arch": arch},
        "read": [read],
      }
      # this twin's workdir (it resumes), or a new one; any other zoo there is refused
      guard.claim(
        workdir,
        twin_config,
        {zoo.MODELS_FILE: models_table},
        read=[read],
        holds="another zoo (not this source, selection and sparsify config)",
      )
      _sparsify(config, src, workdir, arch, ds, models_table, source_epoch, twin_config)
    finally:
      src.close()
  return zoo.Zoo(workdir)


def _sparsify(
  config,
  src: zoo.Zoo,
  workdir: str,
  arch: str,
  ds: dict,
  models_table: pd.DataFrame,
  source_epoch: int,
  twin_config: dict,
) -> None:
  splits = {split: data.load_as_zoo(ds, split, models.image_size(arch)) for split in data.SPLITS}
  for split in ("train", "validation", "test"):
    limit = ds.get("train_size") if split == "train" else ds.get("eval_size")
    if limit is not None and limit < len(splits[split]):
      index = np.sort(
        np.random.default_rng(ds["split_seed"]).permutation(len(splits[split]))[:limit]
      )
      splits[split] = splits[split].take(index)
  train = splits["train"]
  batch_size = config.batch_size or src.config["batch_size"]

  states, fns, evals = {}, {}, {}
  for c, rows in grid.cohorts(models_table):
    cohort = c
    params = jax.tree.map(jnp.asarray, src.params(rows["source_model"].to_numpy(), source_epoch))
    lr, wd = (
      jnp.asarray(rows[k].to_numpy(), jnp.float32) for k in ("learning_rate", "weight_decay")
    )
    key = int(rows["cohort"].iloc[0])
    states[key] = variational.create_twins(
      params,
      cohort.optimizer,
      lr,
      wd,
      jnp.asarray(rows["seed"].to_numpy(), jnp.int32),
      log_sigma2_init=config.log_sigma2_init,
    )
    fns[key] = variational.make_train_epoch(
      arch,
      cohort.activation,
      cohort.optimizer,
      batch_size=batch_size,
      num_train=len(train),
      mean=train.mean,
      std=train.std,
      epochs=config.num_epochs,
      kl_max=config.kl_max,
    )
    evals[key] = variational.make_evaluate(
      arch, cohort.activation, config.threshold, config.eval_batch_size, train.mean, train.std
    )

  writer = zoo.ZooWriter(workdir, zoo.store_metadata(twin_config, models_table))
  history = []

  def commit(epoch):
    metrics, diverged = {}, {}
    for c, state in states.items():
      m = {}
      for split, dataset in splits.items():
        out = evals[c](state, dataset)
        m[f"{split}_loss"], m[f"{split}_acc"] = out["loss"], out["acc"]
      m["sparsity"] = np.asarray(
        variational.population_sparsity(state.params, state.log_sigma2, config.threshold)
      )
      metrics[c] = m
      diverged[c] = ~np.isfinite(m["train_loss"])
    writer.save(
      epoch,
      {c: s.params for c, s in states.items()},
      {c: {**m, "diverged": diverged[c]} for c, m in metrics.items()},
      {str(c): s for c, s in states.items()},
      {c: {"log_sigma2": s.log_sigma2} for c, s in states.items()},
    )
    history.append(zoo.metrics_rows(models_table, epoch, metrics, diverged))
    zoo.write_table_atomic(pd.concat(history), os.path.join(workdir, zoo.METRICS_FILE))

  try:
    restored = writer.restore_state(
      {str(c): jax.tree.map(ocp.utils.to_shape_dtype_struct, s) for c, s in states.items()}
    )
    if restored is None:
      start = 0
      commit(0)
    else:  # a killed run: its committed epochs stay, training continues from the newest state
      start, restored_states = restored
      states = {int(c): s for c, s in restored_states.items()}
      history = [zoo.epoch_rows(models_table, e, writer.epoch_metrics(e)) for e in range(start + 1)]
      zoo.write_table_atomic(pd.concat(history), os.path.join(workdir, zoo.METRICS_FILE))
    for epoch in range(start + 1, config.num_epochs + 1):
      for c in states:
        states[c], _ = fns[c](
          states[c], jnp.asarray(train.images), jnp.asarray(train.labels), epoch
        )
      commit(epoch)
  finally:
    writer.close()


if __name__ == "__main__":
  from absl import flags
  from ml_collections import config_flags

  from zoo_jax import cli

  _CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/sparsify.py", "Path to configs/sparsify.py.", lock_config=True
  )
  _ZOO = flags.DEFINE_string("zoo", None, "The zoo whose last-epoch models are sparsified.")
  _WORKDIR = flags.DEFINE_string("workdir", None, "Where the twin zoo is written.")
  flags.mark_flags_as_required(["zoo", "workdir"])

  def main(argv):
    del argv
    twin = sparsify_zoo(_CONFIG.value, _ZOO.value, _WORKDIR.value)
    last = twin.metrics[twin.metrics["epoch"] == twin.epochs[-1]]
    first = twin.metrics[twin.metrics["epoch"] == 0]
    print(
      json.dumps(
        {
          "models": len(twin.models),
          "epochs": twin.epochs[-1],
          "test_acc_source_mean": float(first["test_acc"].mean()),
          "test_acc_twin_mean": float(last["test_acc"].mean()),
          "sparsity_mean": float(last["sparsity"].mean()),
          "sparsity_min": float(last["sparsity"].min()),
        },
        indent=1,
      )
    )

  cli.run(main)
