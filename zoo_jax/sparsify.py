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
epoch 0 is the source model itself (log sigma^2 at its initial value). `deployed(params,
log_sigma2)` gives the sparse weights that the zoo's architecture runs as is.

A twin run commits every epoch with its training state (zoo.ZooWriter, as training does): the
same command into the same workdir resumes a killed run after its last complete epoch, to the
twin an uninterrupted run writes (every model's noise and batch order come from its seed and the
epoch), or leaves a complete twin as it is; a workdir holding another twin (another source,
selection or config) is refused. One run writes a workdir at a time (zoo_jax.lock).

  python -m zoo_jax.sparsify --config=configs/sparsify.py --zoo=SOURCE_ZOO --workdir=TWIN
"""

import dataclasses
import json
import os
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pandas as pd

from zoo_jax import data, grid, lock, models, population, zoo
from zoo_jax.models.cnn import ACTIVATIONS

ARCHS = ("cnn_s", "cnn_l")  # the architectures with a CNN_ARD twin
_K1, _K2, _K3 = 0.63576, 1.8732, 1.48695
_CLAMP = {"conv": 8.0, "dense": 10.0}  # |log alpha| bounds of Conv2dARD and LinearARD
_LAYERS = {
  "cnn_s": (
    "conv_0",
    "pool",
    "act",
    "conv_1",
    "pool",
    "act",
    "conv_2",
    "act",
    "flatten",
    "dense_0",
    "act",
    "dense_1",
  ),
  "cnn_l": (
    "conv_0",
    "pool",
    "act",
    "conv_1",
    "pool",
    "act",
    "conv_2",
    "pool",
    "act",
    "flatten",
    "dense_0",
    "act",
    "dense_1",
  ),
}


def log_alpha(params: Any, log_sigma2: Any) -> Any:
  """log alpha per weight (and conv bias): log sigma^2 - log w^2, clamped as in the Model Zoos."""
  out = {}
  for name, layer in log_sigma2.items():
    bound = _CLAMP[name.split("_")[0]]
    out[name] = {
      k: jnp.clip(v - 2 * jnp.log(jnp.abs(params[name][k]) + 1e-15), -bound, bound)
      for k, v in layer.items()
    }
  return out


def init_log_sigma2(params: Any, value: float) -> Any:
  """log sigma^2 for every weight, and for the convolutions' biases (LinearARD leaves its bias alone)."""
  return {
    name: {
      k: jnp.full_like(v, value)
      for k, v in layer.items()
      if k == "kernel" or name.startswith("conv")
    }
    for name, layer in params.items()
  }


def kl(params: Any, log_sigma2: Any) -> jax.Array:
  """The KL approximation of Molchanov et al. (2017), summed over every variational parameter."""
  total = 0.0
  for leaf in jax.tree.leaves(log_alpha(params, log_sigma2)):
    neg_kl = _K1 * jax.nn.sigmoid(_K2 + _K3 * leaf) - 0.5 * jnp.log1p(jnp.exp(-leaf)) - _K1
    total = total - jnp.sum(neg_kl)
  return total


def deployed(params: Any, log_sigma2: Any, threshold: float = 3.0) -> Any:
  """The sparse weights: every weight (and conv bias) with log alpha >= threshold set to 0."""
  alpha = log_alpha(params, log_sigma2)
  return {
    name: {
      k: jnp.where(alpha[name][k] >= threshold, 0.0, v) if k in alpha.get(name, {}) else v
      for k, v in layer.items()
    }
    for name, layer in params.items()
  }


def sparsity(params: Any, log_sigma2: Any, threshold: float = 3.0) -> jax.Array:
  """Fraction of the weights (kernels, not biases) with log alpha >= threshold."""
  alpha = log_alpha(params, log_sigma2)
  dropped = sum(jnp.sum(alpha[name]["kernel"] >= threshold) for name in alpha)
  total = sum(alpha[name]["kernel"].size for name in alpha)
  return dropped / total


def _conv(x, kernel):
  return jax.lax.conv_general_dilated(
    x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def _pool(x):
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def apply_vd(
  arch: str, activation: str, params: Any, log_sigma2: Any, x: jax.Array, key: jax.Array | None
):
  """Logits of a CNN-s / CNN-l under variational dropout: with `key`, the local reparameterisation
  trick (pre-activations ~ N(mu, sigma^2)); with key=None, the mean network (weights unclipped)."""
  alpha = jax.tree.map(jnp.exp, log_alpha(params, log_sigma2))
  act = ACTIVATIONS[activation]
  for i, op in enumerate(_LAYERS[arch]):
    if op == "pool":
      x = _pool(x)
    elif op == "act":
      x = act(x)
    elif op == "flatten":
      x = x.reshape(x.shape[0], -1)
    else:
      w, b = params[op]["kernel"], params[op]["bias"]
      linear = _conv if op.startswith("conv") else jnp.matmul
      mean = linear(x, w) + b
      if key is None:
        x = mean
        continue
      var = linear(x * x, alpha[op]["kernel"] * w * w)
      if op.startswith("conv"):  # Conv2dARD gives its bias a variance too
        var = var + alpha[op]["bias"] * b * b
      x = mean + jnp.sqrt(var + 1e-15) * jax.random.normal(jax.random.fold_in(key, i), mean.shape)
  return x


@flax.struct.dataclass
class TwinState:
  params: Any  # [P, ...]
  log_sigma2: Any  # [P, ...]
  opt_state: Any
  seed: jax.Array  # [P]


def make_train_epoch(
  arch: str,
  activation: str,
  optimizer: str,
  *,
  batch_size: int,
  num_train: int,
  mean,
  std,
  epochs: int,
  kl_max: float,
):
  """Builds the jitted `train_epoch(state, images, labels, epoch) -> (state, loss [P])` of a cohort."""
  tx = population.make_optimizer(optimizer)(learning_rate=0.0, weight_decay=0.0)
  steps = num_train // batch_size

  def model_epoch(params, log_sigma2, opt_state, seed, epoch, images, labels):
    key = jax.random.fold_in(
      jax.random.fold_in(jax.random.key(seed), 2), epoch
    )  # stream 2: sparsification
    perm_key, noise_key = jax.random.split(key)
    order = jax.random.permutation(perm_key, num_train)[: steps * batch_size].reshape(
      steps, batch_size
    )
    kl_weight = jnp.minimum(1.0, kl_max * epoch / epochs)

    def loss_fn(variables, x, y, key):
      logits = apply_vd(arch, activation, variables["params"], variables["log_sigma2"], x, key)
      return population.cross_entropy(logits, y) + kl_weight * kl(
        variables["params"], variables["log_sigma2"]
      )

    def step(carry, inputs):
      variables, opt_state = carry
      idx, i = inputs
      x, y = population.normalize(images[idx], mean, std), labels[idx]
      loss, grads = jax.value_and_grad(loss_fn)(variables, x, y, jax.random.fold_in(noise_key, i))
      updates, opt_state = tx.update(grads, opt_state, variables)
      return (optax.apply_updates(variables, updates), opt_state), loss

    (variables, opt_state), losses = jax.lax.scan(
      step, ({"params": params, "log_sigma2": log_sigma2}, opt_state), (order, jnp.arange(steps))
    )
    return variables["params"], variables["log_sigma2"], opt_state, jnp.mean(losses)

  @jax.jit
  def train_epoch(state: TwinState, images, labels, epoch):
    params, log_sigma2, opt_state, loss = jax.lax.map(
      lambda m: model_epoch(*m, epoch, images, labels),
      (state.params, state.log_sigma2, state.opt_state, state.seed),
      batch_size=1,
    )
    return state.replace(params=params, log_sigma2=log_sigma2, opt_state=opt_state), loss

  return train_epoch


def _evaluate(arch, activation, threshold, batch_size, mean, std):
  """Scores the deployed (sparse) weights of a cohort with the zoo's own evaluation."""
  evaluate = population.make_evaluate(
    population.Cohort(arch, activation, "adam", False), batch_size=batch_size, mean=mean, std=std
  )

  def run(state: TwinState, split) -> dict:
    sparse = jax.vmap(lambda p, s: deployed(p, s, threshold))(state.params, state.log_sigma2)
    m = evaluate(sparse, jnp.asarray(split.images), jnp.asarray(split.labels))
    return {"loss": np.asarray(m.loss), "acc": np.asarray(m.accuracy)}

  return run


def sparsify_zoo(
  config: ml_collections.ConfigDict, source: str, workdir: str, model_ids: Any = None
) -> zoo.Zoo:
  """Sparsifies the last-epoch models of the zoo in `source` (all, or `model_ids`, e.g. from
  `Zoo.select`) for config.num_epochs epochs into a twin zoo; `source_model` names each twin's model.
  Resumes a killed run into the same workdir (see the module docstring)."""
  src = zoo.Zoo(source)
  arch = src.config["model"]["arch"]
  if arch not in ARCHS:
    raise ValueError(
      f"Sparsified twins exist for {list(ARCHS)}; the zoo in {source!r} is {arch!r}."
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
  twin_config = {
    "source": os.path.abspath(source),
    "source_config": src.config,
    "sparsify": config.to_dict(),
    "dataset": ds,
    "model": {"arch": arch},
  }
  os.makedirs(workdir, exist_ok=True)
  with lock.workdir_lock(workdir):  # one writer per workdir, as for training
    # this twin's workdir (it resumes), or a new one; any other zoo there is refused
    zoo.claim_workdir(
      workdir,
      twin_config,
      {zoo.MODELS_FILE: models_table},
      holds="another zoo (not this source, selection and sparsify config)",
    )
    _sparsify(config, src, workdir, arch, ds, models_table, source_epoch, twin_config)
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
      splits[split] = dataclasses.replace(
        splits[split], images=splits[split].images[index], labels=splits[split].labels[index]
      )
  train = splits["train"]
  batch_size = config.batch_size or src.config["batch_size"]

  states, fns, evals = {}, {}, {}
  for c, rows in grid.cohorts(models_table):
    cohort = c
    params = jax.tree.map(jnp.asarray, src.params(rows["source_model"].to_numpy(), source_epoch))
    log_sigma2 = jax.vmap(lambda p: init_log_sigma2(p, config.log_sigma2_init))(params)
    make_tx = population.make_optimizer(cohort.optimizer)
    lr, wd = (
      jnp.asarray(rows[k].to_numpy(), jnp.float32) for k in ("learning_rate", "weight_decay")
    )
    opt_state = jax.vmap(
      lambda p, s, lr, wd: make_tx(learning_rate=lr, weight_decay=wd).init(
        {"params": p, "log_sigma2": s}
      )
    )(params, log_sigma2, lr, wd)
    key = int(rows["cohort"].iloc[0])
    states[key] = TwinState(
      params, log_sigma2, opt_state, jnp.asarray(rows["seed"].to_numpy(), jnp.int32)
    )
    fns[key] = make_train_epoch(
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
    evals[key] = _evaluate(
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
        jax.vmap(lambda p, s: sparsity(p, s, config.threshold))(state.params, state.log_sigma2)
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
  from absl import app, flags
  from absl import logging as absl_logging
  from ml_collections import config_flags

  _CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/sparsify.py", "Path to configs/sparsify.py.", lock_config=True
  )
  _ZOO = flags.DEFINE_string("zoo", None, "The zoo whose last-epoch models are sparsified.")
  _WORKDIR = flags.DEFINE_string("workdir", None, "Where the twin zoo is written.")
  flags.mark_flags_as_required(["zoo", "workdir"])

  def main(argv):
    del argv
    absl_logging.set_verbosity(absl_logging.ERROR)
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

  app.run(main)
