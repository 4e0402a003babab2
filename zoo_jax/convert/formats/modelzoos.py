"""Reads a Model Zoos zoo (Schürholt et al., 2022) as published: one Ray Tune trial folder per model.

Accepted layout (what the Model Zoos code, `code/zoo_generators/*` + `def_NN_experiment.py`,
writes through Ray Tune 1.x; anything else is an error that names the file):

    SRC/                                   the experiment folder (or SRC is one trial folder)
      <trial name>/                        one per model; any folder holding a params.json or a
                                           result.json
        params.json                        the trial's config, one JSON object; optional: without
                                           it the config is the "config" field of result.json's
                                           lines, as the published loader reads it
        result.json                        one JSON object per line, one line per reported epoch
        checkpoint_<n>/checkpoints         torch.save'd state_dict after epoch n (any number of
                                           digits; Ray writes 6, checkpoint_000000 = initial weights)
        model_epoch_<n>.ptf                alternatively: torch.save'd dict with key "state_dict"
                                           (`NNmodule.save_model`; model_epoch_best.ptf is ignored)
      <other files and folders>            ignored (config.json, dataset.pt, experiment_state-*.json, ...);
                                           a folder with checkpoints but neither params.json nor
                                           result.json is an error

Config keys read (from params.json, else result.json's "config"; others are ignored):
    "model::type"        required: "CNN" -> cnn_s (CNN-s), "CNN3" -> cnn_l (CNN-l), "Resnet18" ->
                         resnet18 (def_net.py's torchvision ResNet-18), "CNN_ARD" / "CNN3_ARD" ->
                         a sparsified twin of cnn_s / cnn_l (def_net_distillation.py). ("CNN2",
                         6-9-6 channels, "CNN2_ARD" and "MLP" have no zoo_jax architecture and are refused.)
    "model::channels_in" required: input channels (checked against the checkpoints)
    "model::nlin"        required: tanh, relu, sigmoid, gelu, leakyrelu (-> leaky_relu)
    "model::o_dim"       classes of a Resnet18 (10 CIFAR-10, 100 CIFAR-100, 200 Tiny-ImageNet);
                         required there; the CNNs have 10
    "training::init_checkpoint_path", "training::sample_epoch"
                         a twin's source trial folder and epoch -> models.csv columns source_trial
                         (the folder's name) and source_epoch (twins only)
    "model::dropout", "model::init_type", "optim::optimizer", "optim::lr", "optim::wd", "seed"
                         -> dropout, init, optimizer, learning_rate, weight_decay, seed (NaN if absent)
result.json lines: the epoch is "training_iteration" (Ray's counter, the same one that numbers
the checkpoint folders) or else "epoch"; metrics are read from the first present of
    train_loss | loss_train,  train_acc | acc_train | train_accuracy,
    val_loss | loss_val | validation_loss,  val_acc | acc_val | validation_acc | val_accuracy,
    test_loss | loss_test,  test_acc | acc_test | test_accuracy.
-999 (a "not computed" marker some Model Zoos scripts write) and null read as NaN (the
published trainer computes every epoch's metrics, epoch 0 included, so none is expected there);
a reported NaN/inf loss marks the model diverged at that epoch. A twin's "sparsity_ratio" (or
"sparsity") becomes the `sparsity` column of metrics.csv, as in the twins zoo_jax.sparsify writes. When an epoch appears twice
(Ray appends again after a trial restore) the last line wins, as its checkpoint was rewritten.

Models are ordered by folder name (Ray numbers trials with zero-padded indices). The zoo's
epochs are those with a checkpoint in at least one model; a model without one at such an
epoch is kept with NaN weights and status "missing". Conv/linear layers are matched by their
order in `module_list`, so dropout layers (present in CNN-s only when p > 0, always in CNN-l)
do not matter.

What each checkpoint becomes (`Zoo.variables` reads every collection back):
  CNN, CNN3            params
  Resnet18             params + batch_stats (running_mean/running_var; num_batches_tracked, which
                       PyTorch reads only when BatchNorm's momentum is None, is dropped)
  CNN_ARD, CNN3_ARD    params (the unclipped weights) + log_sigma2 (`log_sigma2` of every layer,
                       `log_sigma2_bias` of the convolutions; LinearARD's is unused), the layout
                       of zoo_jax.sparsify's twins: `variational.deployed` gives the sparse weights
"""

import json
import math
import os
import re
import warnings
from typing import Any, NamedTuple

import pandas as pd

from zoo_jax import models as zoo_models
from zoo_jax import zoo
from zoo_jax.convert import torch_export, writer

ARCH_TYPES = {
  "CNN": "cnn_s",
  "CNN3": "cnn_l",
  "Resnet18": "resnet18",
  "CNN_ARD": "cnn_s",
  "CNN3_ARD": "cnn_l",
}
TWIN_TYPES = ("CNN_ARD", "CNN3_ARD")  # sparsified twins: a log_sigma2 collection beside params
ACTIVATION_NAMES = {
  "tanh": "tanh",
  "relu": "relu",
  "sigmoid": "sigmoid",
  "gelu": "gelu",
  "leakyrelu": "leaky_relu",
  "leaky_relu": "leaky_relu",
}
_HPARAM_KEYS = {
  "seed": "seed",
  "dropout": "model::dropout",
  "init": "model::init_type",
  "optimizer": "optim::optimizer",
  "learning_rate": "optim::lr",
  "weight_decay": "optim::wd",
}
_NUMERIC = {"seed", "dropout", "learning_rate", "weight_decay"}
EXTRA_METRIC_KEYS = {
  "sparsity": ("sparsity_ratio", "sparsity")
}  # a twin's fraction of dropped weights
METRIC_KEYS = {
  "train_loss": ("train_loss", "loss_train"),
  "train_acc": ("train_acc", "acc_train", "train_accuracy"),
  "validation_loss": ("val_loss", "loss_val", "validation_loss"),
  "validation_acc": ("val_acc", "acc_val", "validation_acc", "val_accuracy"),
  "test_loss": ("test_loss", "loss_test"),
  "test_acc": ("test_acc", "acc_test", "test_accuracy"),
}
NOT_COMPUTED = -999  # a "not computed" marker in some Model Zoos scripts; read as NaN
_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")
_CHECKPOINT_FILE = re.compile(r"^model_epoch_(\d+)\.ptf$")
_LAYOUT = (
  "expected a Model Zoos layout: SRC/<trial>/result.json (and/or params.json) and "
  "SRC/<trial>/checkpoint_<epoch>/checkpoints (see zoo_jax/convert/formats/modelzoos.py)"
)


def scan(src: str) -> writer.Source:
  """Scans a published Model Zoos folder: configs, metrics and checkpoint files (no weights read)."""
  if not os.path.isdir(src):
    raise FileNotFoundError(f"{src!r} is not a folder; {_LAYOUT}.")
  trials = _trial_folders(src)
  rows, structure, checkpoints, metrics = [], [], [], []
  for position, trial in enumerate(trials):
    row, key = _read_params(trial)
    rows.append(row)
    structure.append(key)
    checkpoints.append(_checkpoint_files(trial))
    for epoch, values in _read_results(trial).items():
      metrics.append({"model": position, "epoch": epoch, **values})
  table = pd.DataFrame(rows)
  shapes = {
    key: writer.variable_shapes(
      key.arch,
      key.channels,
      num_classes=key.num_classes,
      collections=("log_sigma2",) if key.twin else (),
    )
    for key in dict.fromkeys(structure)
  }
  epochs = sorted({epoch for files in checkpoints for epoch in files})
  extra = [name for name in EXTRA_METRIC_KEYS if any(name in m for m in metrics)]
  metrics_table = pd.DataFrame(
    metrics, columns=["model", "epoch", *zoo.METRIC_COLUMNS, *extra, "loss_diverged"]
  )

  def read_epoch(epoch: int) -> list[Any]:
    out = []
    for files, key in zip(checkpoints, structure):
      path = files.get(epoch)
      out.append(None if path is None else _read_checkpoint(path, key, shapes[key]))
    return out

  return writer.Source(
    models=table,
    structure=structure,
    shapes=shapes,
    epochs=epochs,
    metrics=metrics_table,
    read_epoch=read_epoch,
  )


class Structure(NamedTuple):
  """What fixes a trial's variable shapes and its vmap; equal structures share a cohort."""

  arch: str
  channels: int
  activation: str
  optimizer: str
  use_dropout: bool
  num_classes: int = 10
  twin: bool = False


def _is_trial(path: str) -> bool:
  return any(os.path.exists(os.path.join(path, name)) for name in ("params.json", "result.json"))


def _trial_folders(src: str) -> list[str]:
  if _is_trial(src):
    return [src]
  trials = []
  for name in sorted(os.listdir(src)):
    path = os.path.join(src, name)
    if not os.path.isdir(path):
      continue
    if _is_trial(path):
      trials.append(path)
    elif any(_CHECKPOINT_DIR.match(n) or _CHECKPOINT_FILE.match(n) for n in os.listdir(path)):
      raise ValueError(
        f"{path!r} holds checkpoints but neither a params.json nor a result.json; {_LAYOUT}."
      )
  if not trials:
    raise ValueError(
      f"{src!r} has no trial folders (sub-folders with a params.json or result.json); {_LAYOUT}."
    )
  return trials


def _read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as error:
    raise ValueError(f"{path}: not valid JSON ({error}); the file may be truncated.") from error


def _trial_config(trial: str) -> tuple[str, Any]:
  """(where it was read, the config) of a trial: params.json, else the "config" field of the
  first result.json line that has one (the published loader never opens params.json)."""
  path = os.path.join(trial, "params.json")
  if os.path.exists(path):
    return path, _read_json(path)
  path = os.path.join(trial, "result.json")
  for number, record in _result_lines(path):
    if isinstance(record.get("config"), dict):
      return f"{path}, line {number} ('config')", record["config"]
  raise ValueError(
    f"{path}: no line has a 'config' object and there is no params.json; one of the two "
    "is needed to rebuild the model."
  )


def _read_params(trial: str) -> tuple[dict, Structure]:
  """(models-table row, structure) from a trial's config."""
  path, config = _trial_config(trial)
  if not isinstance(config, dict):
    raise ValueError(
      f"{path}: expected one JSON object (the trial config), got {type(config).__name__}."
    )
  for key in ("model::type", "model::channels_in", "model::nlin"):
    if key not in config:
      raise ValueError(f"{path}: the key {key!r} is missing; it is required to rebuild the model.")
  model_type = config["model::type"]
  if model_type not in ARCH_TYPES:
    raise ValueError(
      f"{path}: model::type {model_type!r} is not supported; supported: "
      f"{ARCH_TYPES} (Model Zoos class -> zoo_jax architecture)."
    )
  arch = ARCH_TYPES[model_type]
  nlin = str(config["model::nlin"]).lower()
  if nlin not in ACTIVATION_NAMES:
    raise ValueError(
      f"{path}: model::nlin {config['model::nlin']!r} has no zoo_jax activation; "
      f"supported: {sorted(ACTIVATION_NAMES)}."
    )
  if arch == "resnet18" and nlin != "relu":
    warnings.warn(
      f"{path}: model::nlin {config['model::nlin']!r} is ignored: the Model Zoos' ResNet18 is a "
      "ReLU network whatever nlin says."
    )
    nlin = "relu"
  channels = _integer(config, "model::channels_in", path)
  num_classes = 10
  if arch == "resnet18":
    if "model::o_dim" not in config:
      raise ValueError(
        f"{path}: the key 'model::o_dim' is missing; a Resnet18 needs its number of classes."
      )
    num_classes = _integer(config, "model::o_dim", path)
  row = {"seed": math.nan, "arch": arch, "activation": ACTIVATION_NAMES[nlin]}
  for column, key in _HPARAM_KEYS.items():
    value = config.get(key)
    if column in _NUMERIC:
      try:
        value = math.nan if value is None else float(value)
      except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {key} must be a number, got {value!r}.") from error
    else:
      value = "" if value is None else str(value)
    row[column] = value
  row["source"] = os.path.basename(os.path.normpath(trial))
  assert set(row) == set(writer.HPARAM_COLUMNS) | {"source"}
  assert row["activation"] in zoo_models.ACTIVATIONS
  twin = model_type in TWIN_TYPES
  if arch == "resnet18":
    row["num_classes"] = num_classes
  if twin:  # which trial, at which epoch, the twin was sparsified from
    source = config.get("training::init_checkpoint_path")
    row["source_trial"] = "" if source is None else os.path.basename(os.path.normpath(str(source)))
    epoch = config.get("training::sample_epoch")
    row["source_epoch"] = math.nan if epoch is None else float(epoch)
  return row, Structure(
    arch, channels, row["activation"], row["optimizer"], bool(row["dropout"] > 0), num_classes, twin
  )


def _integer(config: dict, key: str, path: str) -> int:
  try:
    return int(config[key])
  except (TypeError, ValueError) as error:
    raise ValueError(f"{path}: {key} must be an integer, got {config[key]!r}.") from error


def _checkpoint_files(trial: str) -> dict[int, str]:
  """{epoch: file} of a trial's checkpoints, both accepted namings."""
  files: dict[int, str] = {}
  for name in os.listdir(trial):
    path = os.path.join(trial, name)
    match = _CHECKPOINT_DIR.match(name) if os.path.isdir(path) else _CHECKPOINT_FILE.match(name)
    if match is None:
      continue
    if os.path.isdir(path):
      path = os.path.join(path, "checkpoints")
      if not os.path.isfile(path):
        raise ValueError(
          f"{os.path.dirname(path)} has no 'checkpoints' file; expected the torch.save'd "
          "state_dict there (Ray Tune checkpoint of the Model Zoos trainable)."
        )
    epoch = int(match.group(1))
    if epoch in files:
      raise ValueError(
        f"{trial}: two checkpoints for epoch {epoch}: {files[epoch]} and {path}; keep one."
      )
    files[epoch] = path
  return files


def _read_results(trial: str) -> dict[int, dict]:
  """{epoch: metrics} from a trial's result.json; empty (with a warning) when there is none."""
  path = os.path.join(trial, "result.json")
  if not os.path.exists(path):
    warnings.warn(f"{path} is missing; the metrics of {trial} are NaN.")
    return {}
  results = {}
  for number, record in _result_lines(path):
    epoch = record.get("training_iteration", record.get("epoch"))
    if epoch is None:
      raise ValueError(
        f"{path}, line {number}: no 'training_iteration' or 'epoch' key; "
        "cannot tell which epoch the metrics belong to."
      )
    results[int(epoch)] = _metrics(record)
  return results


def _result_lines(path: str):
  """(line number, JSON object) of each non-empty line of a result.json."""
  with open(path) as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as error:
        raise ValueError(
          f"{path}, line {number}: not valid JSON ({error}); expected one JSON object per line "
          "(the file may be truncated)."
        ) from error
      if not isinstance(record, dict):
        raise ValueError(
          f"{path}, line {number}: expected a JSON object, got {type(record).__name__}."
        )
      yield number, record


def _metrics(record: dict) -> dict:
  values, diverged = {}, False
  for name, keys in METRIC_KEYS.items():
    value = next((record[k] for k in keys if k in record), None)
    if value is None or value == NOT_COMPUTED:
      values[name] = math.nan
      continue
    values[name] = float(value)
    diverged |= name.endswith("loss") and not math.isfinite(values[name])
  for name, keys in EXTRA_METRIC_KEYS.items():
    value = next((record[k] for k in keys if k in record), None)
    if value is not None:
      values[name] = math.nan if value == NOT_COMPUTED else float(value)
  return {**values, "loss_diverged": diverged}


def _load_state_dict(path: str) -> Any:
  """The state_dict in a checkpoint file (a bare state_dict, or a dict holding one)."""
  try:
    import torch
  except ImportError as error:
    raise ImportError(
      "Reading Model Zoos checkpoints needs PyTorch: pip install torch (the CPU build is enough)."
    ) from error
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except (
    Exception
  ) as error:  # torch raises many types (zip, pickle, EOF) for damaged files; re-raised here
    raise ValueError(
      f"{path}: cannot be read as a torch.save'd state_dict ({type(error).__name__}: "
      f"{str(error)[:200]}); the file may be truncated."
    ) from error
  if isinstance(loaded, dict) and "state_dict" in loaded:
    loaded = loaded["state_dict"]
  if not isinstance(loaded, dict):
    raise ValueError(
      f"{path}: holds a {type(loaded).__name__}; expected a state_dict (dict of tensors)."
    )
  return loaded


def _read_checkpoint(path: str, key: Structure, shapes: dict) -> dict:
  """The variables of one checkpoint ({"params", and "batch_stats" or "log_sigma2"}), shape-checked."""
  state_dict = _load_state_dict(path)
  published = torch_export.PUBLISHED_CLASS.get(key.arch, "Resnet18")
  published = f"{published}_ARD" if key.twin else published
  is_twin = any(str(k).endswith("log_sigma2") for k in state_dict)
  if is_twin != key.twin:
    raise ValueError(
      f"{path}: "
      + (
        "holds log_sigma2 variances (a CNN_ARD twin)" if is_twin else "has no log_sigma2 variances"
      )
      + f", but the trial's model::type is {published!r}."
    )
  try:
    variables = torch_export.from_torch_state_dict(state_dict, key.arch, channels_in=key.channels)
  except ValueError as error:
    raise ValueError(
      f"{path}: {str(error).rstrip('.')} (the trial declares model::type "
      f"{published!r}, model::channels_in {key.channels})."
    ) from error
  if "params" not in variables:
    variables = {"params": variables}
  writer.check_shapes(variables, shapes, path)
  return variables
