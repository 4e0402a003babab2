"""zoo_jax.convert: published zoos in, PyTorch out.

Small zoos are built on the fly in both published layouts; the converted models must give the
logits of the originals on real digits (PyTorch reference modules written here from the
published code, independent of zoo_jax.convert), keep missing and diverged checkpoints marked,
name the file in every input error, and resume to the zoo of an uninterrupted conversion.
"""

import json
import math
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
import pytest

import torch  # the README test command installs torch==2.13.0 (a CPU build)

nn = torch.nn

from zoo_jax import convert, data, models, zoo  # noqa: E402
from zoo_jax.convert.formats import cnn_zoo as cnn_zoo_reader  # noqa: E402
from zoo_jax.convert.formats import modelzoos  # noqa: E402
from cnn_zoo_files import CNN_ZOO_ACTIVATIONS, CNN_ZOO_STEPS, _KERAS_VARS, make_cnn_zoo  # noqa: E402

MEAN, STD = 0.1307, 0.3081  # MNIST normalisation of the Model Zoos
EPOCHS = 3
TOL = dict(atol=1e-5, rtol=1e-5)
_TORCH_ACT = {
  "tanh": nn.Tanh,
  "relu": nn.ReLU,
  "sigmoid": nn.Sigmoid,
  "gelu": nn.GELU,
  "leaky_relu": nn.LeakyReLU,
}
_NLIN = {
  "tanh": "tanh",
  "relu": "relu",
  "sigmoid": "sigmoid",
  "gelu": "gelu",
  "leaky_relu": "leakyrelu",
}
_ARCH = {"CNN": "cnn_s", "CNN3": "cnn_l"}


class PublishedCNN(nn.Module):
  """The Model Zoos' def_net.CNN (CNN-s) and CNN3 (CNN-l), layer for layer."""

  def __init__(self, model_type, channels_in, nlin, dropout):
    super().__init__()
    act, m = _TORCH_ACT[nlin], nn.ModuleList()
    if model_type == "CNN":  # dropout layers only when p > 0
      for cin, cout, k in ((channels_in, 8, 5), (8, 6, 5)):
        m.extend(
          [nn.Conv2d(cin, cout, k), nn.MaxPool2d(2, 2), act()]
          + ([nn.Dropout(dropout)] if dropout > 0 else [])
        )
      m.extend([nn.Conv2d(6, 4, 2), act(), nn.Flatten(), nn.Linear(36, 20), act()])
      m.extend(([nn.Dropout(dropout)] if dropout > 0 else []) + [nn.Linear(20, 10)])
    else:  # CNN3 always has them
      for cin, cout in ((channels_in, 16), (16, 32), (32, 15)):
        m.extend([nn.Conv2d(cin, cout, 3), nn.MaxPool2d(2, 2), act(), nn.Dropout(dropout)])
      m.extend([nn.Flatten(), nn.Linear(60, 20), act(), nn.Dropout(dropout), nn.Linear(20, 10)])
    self.module_list = m

  def forward(self, x):
    for layer in self.module_list:
      x = layer(x)
    return x


@pytest.fixture(scope="module")
def images():
  """32 real test digits, normalised; tiled to 3 channels, and padded to 32x32 for CNN-l."""
  x = (data.load("mnist5k", "test").images[:32].astype(np.float32) / 255 - MEAN) / STD
  rgb = np.repeat(x, 3, axis=-1)
  return {
    ("cnn_s", 1): x,
    ("cnn_s", 3): rgb,
    ("cnn_l", 3): np.pad(rgb, ((0, 0), (2, 2), (2, 2), (0, 0))),
  }


def _torch_logits(net, x):
  with torch.no_grad():
    return net.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


def _jax_logits(arch, activation, params, x):
  return np.asarray(models.get_model(arch, activation=activation).apply({"params": params}, x))


def _assert_same_zoo(a, b):
  za, zb = zoo.Zoo(a), zoo.Zoo(b)
  assert za.epochs == zb.epochs
  pd.testing.assert_frame_equal(za.models, zb.models)
  pd.testing.assert_frame_equal(za.metrics, zb.metrics)
  for epoch in za.epochs:  # whole steps: every cohort's params, metrics and flags
    trees = [zoo.restore_numpy(z._manager, epoch) for z in (za, zb)]
    jax.tree.map(np.testing.assert_array_equal, *trees)


# --- the Model Zoos layout ------------------------------------------------------------------------


def make_modelzoos(root, specs, epochs=EPOCHS, missing=(), nan_weights=(), nan_loss=(), ptf=()):
  """A Ray Tune experiment folder as the Model Zoos code writes it; returns the original state_dicts.

  specs: (model::type, channels, activation, dropout) per trial. Epoch 0 is the initial model;
  each later epoch perturbs it, standing in for training.
  """
  originals = {}
  for i, (model_type, channels, activation, dropout) in enumerate(specs):
    trial = os.path.join(
      root, f"NN_tune_trainable_5e0a1_{i:05d}_{i}_model::nlin={_NLIN[activation]}"
    )
    os.makedirs(trial)
    config = {
      "model::type": model_type,
      "model::channels_in": channels,
      "model::o_dim": 10,
      "model::nlin": _NLIN[activation],
      "model::dropout": dropout,
      "model::init_type": "kaiming_uniform",
      "optim::optimizer": ["adam", "sgd"][i % 2],
      "optim::lr": [1e-3, 1e-4][i % 2],
      "optim::wd": 1e-4,
      "optim::momentum": 0.9,
      "seed": 1000 + i,
      "training::batchsize": 10,
      "training::epochs_train": epochs - 1,
      "cuda": False,
      "dataset::dump": "/data/dataset.pt",
    }
    with open(os.path.join(trial, "params.json"), "w") as f:
      json.dump(config, f)
    torch.manual_seed(1000 + i)
    net, lines = PublishedCNN(model_type, channels, activation, dropout), []
    for epoch in range(epochs):
      with torch.no_grad():
        for p in net.parameters():
          p.add_(0.05 * torch.randn_like(p) * (epoch > 0))
      state = {k: v.clone() for k, v in net.state_dict().items()}
      if (i, epoch) in nan_weights:
        state["module_list.0.weight"][0, 0, 0, 0] = float("nan")
      originals[i, epoch] = state
      if (i, epoch) not in missing and i in ptf:
        torch.save(
          {"state_dict": state, "epoch": epoch, "test_accuracy": 0.5},
          os.path.join(trial, f"model_epoch_{epoch}.ptf"),
        )
      elif (i, epoch) not in missing:
        os.makedirs(os.path.join(trial, f"checkpoint_{epoch:06d}"))
        torch.save(state, os.path.join(trial, f"checkpoint_{epoch:06d}", "checkpoints"))
      lines.append(
        {
          "train_loss": -999 if epoch == 0 else 2.0 / epoch,
          "train_acc": -999 if epoch == 0 else 0.5,
          "test_loss": float("nan") if (i, epoch) in nan_loss else 2.3 - epoch / 10,
          "test_acc": 0.1 + epoch / 10 + i / 100,
          "training_iteration": epoch,
          "trial_id": f"5e0a1_{i:05d}",
          "config": config,
        }
      )
    with open(os.path.join(trial, "result.json"), "w") as f:
      f.writelines(json.dumps(line) + "\n" for line in lines)
  with open(os.path.join(root, "experiment_state-2022-06-01.json"), "w") as f:
    f.write("{}")
  return originals


SPECS = (
  [("CNN", 1, a, d) for a, d in zip(sorted(models.ACTIVATIONS), (0.0, 0.5) * 3)]
  + [("CNN3", 3, a, d) for a, d in zip(sorted(models.ACTIVATIONS), (0.5, 0.0) * 3)]
  + [("CNN", 3, "tanh", 0.0)]
)
MISSING, NAN_WEIGHTS, NAN_LOSS, PTF = {(0, 1), (7, 0)}, {(1, 2)}, {(2, 1)}, {3}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
  src = str(tmp_path_factory.mktemp("modelzoos"))
  originals = make_modelzoos(
    src, SPECS, missing=MISSING, nan_weights=NAN_WEIGHTS, nan_loss=NAN_LOSS, ptf=PTF
  )
  workdir = str(tmp_path_factory.mktemp("converted"))
  convert.convert("modelzoos", src, workdir)
  return src, originals, workdir


def test_modelzoos_table_maps_hyperparameters_and_cohorts(published):
  src, _, workdir = published
  z = zoo.Zoo(workdir)
  assert z.epochs == list(range(EPOCHS))
  table = z.models
  assert list(table["model_id"]) == list(range(len(SPECS)))
  assert list(table["arch"]) == [_ARCH[s[0]] for s in SPECS]
  assert list(table["activation"]) == [s[2] for s in SPECS]
  np.testing.assert_array_equal(table["dropout"], [s[3] for s in SPECS])
  assert list(table["seed"]) == [1000 + i for i in range(len(SPECS))]
  assert set(table["optimizer"]) == {"adam", "sgd"} and set(table["init"]) == {"kaiming_uniform"}
  assert list(table["source"]) == sorted(n for n in os.listdir(src) if n.startswith("NN_tune"))
  for _, rows in table.groupby(
    "cohort"
  ):  # a cohort shares arch, channels, activation, optimizer, dropout on/off
    assert (
      len(
        {(SPECS[i][0], SPECS[i][1], SPECS[i][2], SPECS[i][3] > 0, i % 2) for i in rows["model_id"]}
      )
      == 1
    )
    assert list(rows["cohort_index"]) == list(range(len(rows)))
  assert z.config["source_format"] == "modelzoos"
  m = z.metrics.set_index(["model_id", "epoch"])
  assert math.isnan(m.loc[(4, 0), "train_loss"])  # the published -999 "not computed"
  assert m.loc[(4, 2), "test_acc"] == pytest.approx(0.1 + 0.2 + 0.04)
  assert m["validation_acc"].isna().all()


@pytest.mark.parametrize("activation", sorted(models.ACTIVATIONS))
def test_modelzoos_logits_match_pytorch_originals(published, images, activation):
  _, originals, workdir = published
  z = zoo.Zoo(workdir)
  checked = 0
  for i, (model_type, channels, act, dropout) in enumerate(SPECS):
    if act != activation:
      continue
    x = images[_ARCH[model_type], channels]
    for epoch in range(EPOCHS):
      if (i, epoch) in MISSING | NAN_WEIGHTS:
        continue
      net = PublishedCNN(model_type, channels, activation, dropout)
      net.load_state_dict(originals[i, epoch])
      params = jax.tree.map(lambda a: a[0], z.params([i], epoch=epoch))
      np.testing.assert_allclose(
        _jax_logits(_ARCH[model_type], activation, params, x), _torch_logits(net, x), **TOL
      )
      checked += 1
  assert checked >= 2 * EPOCHS - 1


def test_modelzoos_missing_and_nan_are_kept_and_marked(published):
  _, originals, workdir = published
  z = zoo.Zoo(workdir)
  status = z.metrics.set_index(["model_id", "epoch"])["status"]
  assert len(status) == len(SPECS) * EPOCHS  # no model and no epoch dropped
  for key in MISSING:
    assert status[key] == "missing"
    assert np.isnan(z.flat([key[0]], epoch=key[1])).all()
  for key in NAN_WEIGHTS:
    assert status[key] == "diverged"
    flat = z.flat([key[0]], epoch=key[1])
    assert np.isnan(flat).sum() == 1  # the weights are kept as published
  report = zoo.check(workdir)  # tables agree with the steps; only "ok" models must be finite
  assert report.ok, str(report)
  for key in NAN_LOSS:
    assert status[key] == "diverged" and np.isfinite(z.flat([key[0]], epoch=key[1])).all()
  marked = MISSING | NAN_WEIGHTS | NAN_LOSS
  assert all(status[k] == "ok" for k in status.index if k not in marked)


def _one_trial(tmp_path, spec=("CNN", 1, "tanh", 0.0), epochs=2):
  src = str(tmp_path / "src")
  make_modelzoos(src, [spec], epochs=epochs)
  trial = os.path.join(src, sorted(n for n in os.listdir(src) if n.startswith("NN_tune"))[0])
  return src, trial


def test_modelzoos_bad_inputs_name_the_file(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match=re.escape(str(empty)) + ".*no trial folders"):
    convert.convert("modelzoos", str(empty), str(tmp_path / "out0"))

  src, trial = _one_trial(tmp_path)
  os.remove(os.path.join(trial, "params.json"))
  results = os.path.join(trial, "result.json")
  with open(results) as f:
    lines = [{k: v for k, v in json.loads(line).items() if k != "config"} for line in f]
  with open(results, "w") as f:
    f.writelines(json.dumps(line) + "\n" for line in lines)
  with pytest.raises(
    ValueError,
    match=re.escape(results) + ": no line has a 'config' object and there is no params.json",
  ):
    convert.convert("modelzoos", src, str(tmp_path / "out1"))

  for k, (declared, key, value) in enumerate(
    [("CNN3", "model::type", "CNN3"), ("CNN", "model::channels_in", 3)]
  ):
    src, trial = _one_trial(tmp_path / f"shape{k}")
    with open(os.path.join(trial, "params.json")) as f:
      config = json.load(f)
    config[key] = value
    with open(os.path.join(trial, "params.json"), "w") as f:
      json.dump(config, f)
    checkpoint = os.path.join(trial, "checkpoint_000000", "checkpoints")
    with pytest.raises(ValueError, match=re.escape(checkpoint) + ".*expects"):
      convert.convert("modelzoos", src, str(tmp_path / f"out_shape{k}"))

  src, trial = _one_trial(tmp_path / "truncated")
  checkpoint = os.path.join(trial, "checkpoint_000001", "checkpoints")
  with open(checkpoint, "r+b") as f:
    f.truncate(os.path.getsize(checkpoint) // 2)
  with pytest.raises(ValueError, match=re.escape(checkpoint) + ".*truncated"):
    convert.convert("modelzoos", src, str(tmp_path / "out_truncated"))

  src, trial = _one_trial(tmp_path / "result")
  results = os.path.join(trial, "result.json")
  with open(results, "r+") as f:
    f.truncate(os.path.getsize(results) - 40)
  with pytest.raises(ValueError, match=re.escape(results) + ", line 2: not valid JSON"):
    convert.convert("modelzoos", src, str(tmp_path / "out_result"))

  src, trial = _one_trial(tmp_path / "cnn2")
  with open(os.path.join(trial, "params.json")) as f:
    config = json.load(f)
  with open(os.path.join(trial, "params.json"), "w") as f:
    json.dump({**config, "model::type": "CNN2"}, f)
  with pytest.raises(
    ValueError, match=re.escape(os.path.join(trial, "params.json")) + ".*'CNN2' is not supported"
  ):
    convert.convert("modelzoos", src, str(tmp_path / "out_cnn2"))


def test_modelzoos_config_from_result_json_without_params_json(tmp_path):
  """The published loader reads each trial's config from result.json's "config" field only."""
  src, _ = _one_trial(tmp_path / "with", spec=("CNN3", 3, "gelu", 0.5))
  convert.convert("modelzoos", src, str(tmp_path / "with_params"))
  for trial in os.listdir(src):
    if trial.startswith("NN_tune"):
      os.remove(os.path.join(src, trial, "params.json"))
  convert.convert("modelzoos", src, str(tmp_path / "without_params"))
  za, zb = zoo.Zoo(str(tmp_path / "with_params")), zoo.Zoo(str(tmp_path / "without_params"))
  pd.testing.assert_frame_equal(za.models, zb.models)
  pd.testing.assert_frame_equal(za.metrics, zb.metrics)
  assert zb.models.loc[0, "arch"] == "cnn_l" and zb.models.loc[0, "activation"] == "gelu"
  for epoch in za.epochs:
    np.testing.assert_array_equal(za.flat(epoch=epoch), zb.flat(epoch=epoch))


def test_workdir_of_another_zoo_is_refused(published, published_cnn_zoo, tmp_path):
  src, _ = _one_trial(tmp_path)
  with pytest.raises(ValueError, match="already holds another zoo"):
    convert.convert("modelzoos", src, published[2])
  with pytest.raises(ValueError, match="not this cnn_zoo conversion.*differ"):
    convert.convert("cnn_zoo", published_cnn_zoo[0], published[2])


# --- the Small CNN Zoo layout ---------------------------------------------------------------------

CNN_ZOO_MISSING, CNN_ZOO_NAN = {(1, 20)}, {(2, 1)}


# Keras variables in the published layout.csv order: each layer's bias, then its kernel.
def _keras_reference_logits(flat, activation, x):
  """The Keras network of the Small CNN Zoo, in PyTorch, from one flat row and the published layout."""
  tensors, start = {}, 0
  for name, shape in _KERAS_VARS:
    n = int(np.prod(shape))
    tensors[name] = torch.from_numpy(flat[start : start + n].reshape(shape).copy())
    start += n
  act = _TORCH_ACT[activation]()
  h = torch.from_numpy(x.transpose(0, 3, 1, 2))
  for layer in ("conv2d", "conv2d_1", "conv2d_2"):
    kernel = tensors[f"sequential/{layer}/kernel:0"].permute(3, 2, 0, 1)  # HWIO -> OIHW
    h = act(torch.nn.functional.conv2d(h, kernel, tensors[f"sequential/{layer}/bias:0"], stride=2))
  h = h.mean(dim=(2, 3))
  return (h @ tensors["sequential/dense/kernel:0"] + tensors["sequential/dense/bias:0"]).numpy()


@pytest.fixture(scope="module")
def published_cnn_zoo(tmp_path_factory):
  src = str(tmp_path_factory.mktemp("cnn_zoo"))
  originals = make_cnn_zoo(src, missing=CNN_ZOO_MISSING, nan_weights=CNN_ZOO_NAN)
  workdir = str(tmp_path_factory.mktemp("converted_cnn_zoo"))
  convert.convert("cnn_zoo", src, workdir)
  return src, originals, workdir


def test_cnn_zoo_parameter_count():
  params = models.get_model("cnn_zoo").init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))
  assert sum(x.size for x in jax.tree.leaves(params)) == 4970  # as published


def test_cnn_zoo_logits_match_keras_reference_and_marks(published_cnn_zoo, images):
  _, originals, workdir = published_cnn_zoo
  z = zoo.Zoo(workdir)
  assert z.epochs == list(CNN_ZOO_STEPS)
  assert list(z.models["activation"]) == list(CNN_ZOO_ACTIVATIONS)
  assert list(z.models["source"]) == [f"/cns/zoo/mnist/{m:05d}" for m in range(4)]
  np.testing.assert_array_equal(z.models["config.train_fraction"], [1.0, 0.5, 1.0, 0.5])
  np.testing.assert_allclose(z.models["weight_decay"], [0, 1e-3, 2e-3, 3e-3])
  assert set(z.models["arch"]) == {"cnn_zoo"} and set(z.models["init"]) == {"he_normal"}
  assert set(z.models["weight_decay_semantics"]) == {"keras_l2_kernels"}
  import json
  from zoo_jax import data

  preprocess = json.loads(z.models["preprocess"].iloc[0])
  info = data.resolve(
    "cifar10", {**preprocess, "image_size": 32}
  )  # CIFAR-10-GS: gray mean, [-1, 1], 32x32
  assert (info.channels, info.grayscale, info.mean, info.std, info.image_size) == (
    1,
    "mean",
    (0.5,),
    (0.5,),
    32,
  )
  status = z.metrics.set_index(["model_id", "epoch"])["status"]
  assert len(status) == 4 * len(CNN_ZOO_STEPS)
  marks = {**{k: "missing" for k in CNN_ZOO_MISSING}, **{k: "diverged" for k in CNN_ZOO_NAN}}
  assert status.to_dict() == {k: marks.get(k, "ok") for k in status.index}
  x = images["cnn_s", 1]
  for (m, step), flat in originals.items():
    params = jax.tree.map(lambda a: a[0], z.params([m], epoch=step))
    if (m, step) in CNN_ZOO_NAN:
      assert np.isnan(z.flat([m], epoch=step)).sum() == 1
      continue
    np.testing.assert_allclose(
      _jax_logits("cnn_zoo", CNN_ZOO_ACTIVATIONS[m], params, x),
      _keras_reference_logits(flat, CNN_ZOO_ACTIVATIONS[m], x),
      **TOL,
    )
  assert np.isnan(z.flat([1], epoch=20)).all()


def test_cnn_zoo_bad_inputs_name_the_file(tmp_path):
  src = str(tmp_path / "zoo")
  make_cnn_zoo(src, activations=("relu",), steps=(0,))
  layout_path = os.path.join(src, "layout.csv")
  layout = pd.read_csv(layout_path)
  layout.loc[1, "shape"] = "(3, 3, 3, 16)"
  layout.to_csv(layout_path, index=False)
  with pytest.raises(ValueError, match=re.escape(layout_path)):
    convert.convert("cnn_zoo", src, str(tmp_path / "out"))

  src = str(tmp_path / "zoo2")
  make_cnn_zoo(src, activations=("relu", "tanh"), steps=(0,))
  weights_path = os.path.join(src, "weights.npy")
  with open(weights_path, "r+b") as f:
    f.truncate(os.path.getsize(weights_path) - 100)
  with pytest.raises(ValueError, match=re.escape(weights_path) + ".*truncated"):
    convert.convert("cnn_zoo", src, str(tmp_path / "out2"))

  src = str(tmp_path / "zoo3")
  make_cnn_zoo(src, activations=("selu",), steps=(0,))
  with pytest.raises(ValueError, match=re.escape(os.path.join(src, "metrics.csv.gz")) + ".*'selu'"):
    convert.convert("cnn_zoo", src, str(tmp_path / "out3"))

  src = str(tmp_path / "zoo4")
  make_cnn_zoo(src, activations=("relu", "tanh"), steps=(0,))
  metrics_path = os.path.join(src, "metrics.csv.gz")
  pd.read_csv(metrics_path).assign(modeldir="/cns/zoo/same").to_csv(metrics_path, index=False)
  with pytest.raises(
    ValueError, match=re.escape(metrics_path) + ".*'/cns/zoo/same' has several rows at epoch 0"
  ):
    convert.convert("cnn_zoo", src, str(tmp_path / "out4"))


def test_cnn_zoo_rows_without_modeldir_are_models_of_their_own(tmp_path):
  src = str(tmp_path / "zoo")
  make_cnn_zoo(src, activations=("relu", "tanh"), steps=(0, 1))
  metrics_path = os.path.join(src, "metrics.csv.gz")
  pd.read_csv(metrics_path).drop(columns="modeldir").to_csv(metrics_path, index=False)
  z = convert.convert("cnn_zoo", src, str(tmp_path / "out"))
  assert list(z.models["source"]) == ["row_0", "row_1", "row_2", "row_3"] and z.epochs == [0, 1]
  assert (z.metrics["status"] == "missing").sum() == 4  # each row-model has one of the two epochs


# --- ResNet-18 and sparsified (CNN_ARD) trials ----------------------------------------------------


def _write_trial(root, name, config, states, lines, params_json=True):
  """One Ray Tune trial folder: params.json (optional), result.json, checkpoint_<epoch>/checkpoints."""
  trial = os.path.join(root, name)
  os.makedirs(trial)
  if params_json:
    with open(os.path.join(trial, "params.json"), "w") as f:
      json.dump(config, f)
  for epoch, state in enumerate(states):
    os.makedirs(os.path.join(trial, f"checkpoint_{epoch:06d}"))
    torch.save(state, os.path.join(trial, f"checkpoint_{epoch:06d}", "checkpoints"))
  with open(os.path.join(trial, "result.json"), "w") as f:
    f.writelines(
      json.dumps({**line, "training_iteration": e, "config": config}) + "\n"
      for e, line in enumerate(lines)
    )


def test_modelzoos_imports_resnet18_trials_with_batchnorm_state(tmp_path):
  src, rng = str(tmp_path / "resnet"), np.random.default_rng(0)
  x = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)  # tiny images: ResNet-18 pools globally
  originals = {}
  for i, num_classes in enumerate((10, 100)):
    config = {
      "model::type": "Resnet18",
      "model::channels_in": 3,
      "model::o_dim": num_classes,
      "model::nlin": "relu",
      "model::dropout": 0.0,
      "model::init_type": "kaiming_uniform",
      "optim::optimizer": "sgd",
      "optim::lr": 0.05,
      "optim::wd": 5e-4,
      "optim::scheduler": "OneCycleLR",
      "seed": i + 1,
    }
    torch.manual_seed(i)
    net, states = convert.torch_model("resnet18", "relu", 3, num_classes=num_classes), []
    for epoch in range(2):  # epoch 1: a few train-mode passes move the BatchNorm statistics
      net.train()
      with torch.no_grad():
        for _ in range(epoch * 3):
          net(torch.from_numpy(rng.normal(1.0, 2.0, (6, 3, 8, 8)).astype(np.float32)))
      states.append({k: v.clone() for k, v in net.state_dict().items()})
      originals[i, epoch] = states[-1]
    lines = [
      {"train_loss": 2.0, "train_acc": 0.1, "test_loss": 2.1, "test_acc": 0.1 + e / 10}
      for e in range(2)
    ]
    _write_trial(
      src, f"NN_tune_trainable_{i:05d}_seed={i + 1}", config, states, lines, params_json=i == 0
    )
  z = convert.convert("modelzoos", src, str(tmp_path / "zoo"))
  assert list(z.models["arch"]) == ["resnet18"] * 2 and list(z.models["num_classes"]) == [10, 100]
  assert list(z.models["cohort"]) == [0, 1]  # another head, another cohort
  assert (z.metrics["status"] == "ok").all()
  assert z.variables([1])["params"]["fc"]["kernel"].shape == (1, 512, 100)
  apply = jax.jit(models.get_model("resnet18", activation="relu", init="kaiming_uniform").apply)
  for i, num_classes in enumerate((10,)):  # logits of the CIFAR-10 one (one compilation)
    for epoch in range(2):
      variables = jax.tree.map(lambda a: a[0], z.variables([i], epoch=epoch))
      assert set(variables) == {"params", "batch_stats"}
      state = originals[i, epoch]
      np.testing.assert_array_equal(
        variables["batch_stats"]["layer2_0"]["downsample_bn"]["var"],
        state["layer2.0.downsample.1.running_var"].numpy(),
      )
      net = convert.torch_model("resnet18", "relu", 3, num_classes=num_classes)
      net.load_state_dict(state)
      expected = _torch_logits(net, x)
      np.testing.assert_allclose(
        np.asarray(apply(variables, x)), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max()
      )
    assert not np.array_equal(
      *(z.variables([i], epoch=e)["batch_stats"]["bn1"]["mean"] for e in (0, 1))
    )


def _ard_reference_logits(model_type, channels, activation, dropout, state, x):
  """CNN_ARD's eval-mode forward, written from def_net_distillation.py: weights (and conv biases)
  whose clamped log alpha = log sigma^2 - 2 log|w| is >= 3 are zeroed; LinearARD keeps its bias."""
  net = PublishedCNN(model_type.replace("_ARD", ""), channels, activation, dropout)
  plain = {}
  for key, value in state.items():
    if key.endswith(("log_sigma2", "log_sigma2_bias")):
      continue
    index = key.split(".")[1]
    conv = state[f"module_list.{index}.weight"].ndim == 4
    sigma = state[key.replace("weight", "log_sigma2").replace("bias", "log_sigma2_bias")]
    if key.endswith("bias") and not conv:
      plain[key] = value
      continue
    bound = 8.0 if conv else 10.0
    alpha = torch.clamp(sigma - 2 * torch.log(torch.abs(value) + 1e-15), -bound, bound)
    plain[key] = torch.where(alpha >= 3, torch.zeros_like(value), value)
  net.load_state_dict(plain)
  return _torch_logits(net, x)


def test_modelzoos_imports_sparsified_cnn_ard_twins(tmp_path, images):
  from zoo_jax.engine import variational

  src, specs = str(tmp_path / "ard"), [("CNN_ARD", 1, "tanh", 0.0), ("CNN_ARD", 1, "tanh", 0.5)]
  originals = {}
  for i, (model_type, channels, activation, dropout) in enumerate(specs):
    config = {
      "model::type": model_type,
      "model::channels_in": channels,
      "model::nlin": _NLIN[activation],
      "model::dropout": dropout,
      "model::init_type": "kaiming_uniform",
      "optim::optimizer": "adam",
      "optim::lr": 1e-3,
      "optim::wd": 0.0,
      "seed": 7 + i,
      "training::sample_epoch": 50,
      "training::init_checkpoint_path": f"/zoos/MNIST/tune_zoo_mnist_uniform/NN_tune_trainable_{i:05d}",
    }
    torch.manual_seed(i)
    base, states = (
      PublishedCNN(model_type.replace("_ARD", ""), channels, activation, dropout).state_dict(),
      [],
    )
    for epoch in range(2):  # log sigma^2 at ard_init (-10) for the source model, spread out later
      state = {}
      for key, value in base.items():
        sigma = (
          torch.full_like(value, -10.0)
          if epoch == 0
          else torch.randn_like(value) * 3 - 2 * torch.log(value.abs())
        )
        state[key] = value.clone()
        state[key.replace("weight", "log_sigma2").replace("bias", "log_sigma2_bias")] = sigma
      states.append(state)
      originals[i, epoch] = state
    lines = [
      {
        "train_loss": 0.3,
        "train_acc": 0.9,
        "test_loss": 0.3,
        "test_acc": 0.9,
        "sparsity_ratio": e * 0.4,
      }
      for e in range(2)
    ]
    _write_trial(src, f"NN_tune_trainable_from_checkpoint_{i:05d}", config, states, lines)
  z = convert.convert("modelzoos", src, str(tmp_path / "zoo"))
  assert list(z.models["source_trial"]) == ["NN_tune_trainable_00000", "NN_tune_trainable_00001"]
  assert list(z.models["source_epoch"]) == [50, 50] and list(z.models["arch"]) == ["cnn_s"] * 2
  np.testing.assert_array_equal(
    z.metrics.sort_values(["epoch", "model_id"])["sparsity"], [0, 0, 0.4, 0.4]
  )
  x = images["cnn_s", 1]
  dropped = 0.0
  for i, (model_type, channels, activation, dropout) in enumerate(specs):
    for epoch in range(2):
      variables = jax.tree.map(lambda a: a[0], z.variables([i], epoch=epoch))
      assert set(variables) == {"params", "log_sigma2"}
      sparse = variational.deployed(variables["params"], variables["log_sigma2"])
      expected = _ard_reference_logits(
        model_type, channels, activation, dropout, originals[i, epoch], x
      )
      np.testing.assert_allclose(_jax_logits("cnn_s", activation, sparse, x), expected, **TOL)
      dropped = max(
        dropped, float(variational.sparsity(variables["params"], variables["log_sigma2"]))
      )
      back = convert.to_torch_state_dict(
        variables, "cnn_s", dropout
      )  # and back to CNN_ARD, exactly
      for key, value in back.items():
        if (
          not key.endswith("log_sigma2_bias")
          or originals[i, epoch][key.replace("log_sigma2_bias", "weight")].ndim == 4
        ):
          np.testing.assert_array_equal(value.numpy(), originals[i, epoch][key].numpy())
  assert dropped > 0.2  # the reference really zeroes weights


def test_modelzoos_twin_type_must_match_the_checkpoint(tmp_path):
  src, trial = _one_trial(tmp_path)
  with open(os.path.join(trial, "params.json")) as f:
    config = json.load(f)
  with open(os.path.join(trial, "params.json"), "w") as f:
    json.dump({**config, "model::type": "CNN_ARD"}, f)
  with pytest.raises(ValueError, match=r"checkpoint_000000.*no log_sigma2.*'CNN_ARD'"):
    convert.convert("modelzoos", src, str(tmp_path / "zoo"))
  with open(os.path.join(trial, "params.json"), "w") as f:
    json.dump({**config, "model::type": "Resnet18", "model::nlin": "relu"}, f)
  with pytest.raises(ValueError, match=r"checkpoints: Not a ResNet-18 state_dict.*'Resnet18'"):
    convert.convert("modelzoos", src, str(tmp_path / "zoo2"))
  del config["model::o_dim"]
  with open(os.path.join(trial, "params.json"), "w") as f:
    json.dump({**config, "model::type": "Resnet18", "model::nlin": "relu"}, f)
  with pytest.raises(ValueError, match=r"params\.json: the key 'model::o_dim' is missing"):
    convert.convert("modelzoos", src, str(tmp_path / "zoo3"))


# --- resumption -----------------------------------------------------------------------------------


@pytest.mark.parametrize("source_format", ["modelzoos", "cnn_zoo"])
def test_killed_conversion_resumes_to_the_uninterrupted_zoo(
  source_format, published, published_cnn_zoo, tmp_path, monkeypatch
):
  src, _, reference = published if source_format == "modelzoos" else published_cnn_zoo
  module, name = (
    (modelzoos, "_load_state_dict")
    if source_format == "modelzoos"
    else (cnn_zoo_reader, "_row_params")
  )
  original, calls, num_models = getattr(module, name), [], len(zoo.Zoo(reference).models)

  def failing(*args):
    calls.append(1)
    if len(calls) > num_models + 1:  # dies inside the second epoch
      raise RuntimeError("killed")
    return original(*args)

  workdir = str(tmp_path / "zoo")
  monkeypatch.setattr(module, name, failing)
  with pytest.raises(RuntimeError, match="killed"):
    convert.convert(source_format, src, workdir)
  assert zoo.Zoo(workdir).epochs == [0]  # what was converted before the failure stays written
  monkeypatch.setattr(module, name, original)
  convert.convert(source_format, src, workdir)
  _assert_same_zoo(reference, workdir)
  convert.convert(source_format, src, workdir)  # a complete conversion is left as it is
  _assert_same_zoo(reference, workdir)


# --- export to PyTorch ----------------------------------------------------------------------------


@pytest.mark.parametrize(
  "arch,channels,dropout", [("cnn_s", 1, 0.0), ("cnn_s", 3, 0.5), ("cnn_l", 3, 0.0)]
)
@pytest.mark.parametrize("activation", sorted(models.ACTIVATIONS))
def test_export_loads_strictly_into_the_published_module(
  arch, channels, dropout, activation, images
):
  x = images[arch, channels]
  model = models.get_model(arch, activation=activation, init="kaiming_uniform")
  params = jax.tree.map(np.asarray, model.init(jax.random.key(3), x[:1])["params"])
  state = convert.to_torch_state_dict(params, arch, dropout=dropout)
  published = PublishedCNN({"cnn_s": "CNN", "cnn_l": "CNN3"}[arch], channels, activation, dropout)
  published.load_state_dict(state, strict=True)
  ours = convert.torch_model(arch, activation, channels, dropout)
  ours.load_state_dict(state, strict=True)
  expected = _jax_logits(arch, activation, params, x)
  np.testing.assert_allclose(_torch_logits(published, x), expected, **TOL)
  np.testing.assert_allclose(_torch_logits(ours, x), expected, **TOL)
  jax.tree.map(np.testing.assert_array_equal, convert.from_torch_state_dict(state, arch), params)


def test_import_of_a_state_dict_of_another_architecture_names_the_layer():
  state = PublishedCNN("CNN3", 3, "tanh", 0.0).state_dict()
  with pytest.raises(
    ValueError, match=r"module_list\.0\.weight has shape \(16, 3, 3, 3\).*expects \(8, 3, 5, 5\)"
  ):
    convert.from_torch_state_dict(state, "cnn_s")


@pytest.mark.slow
def test_cli_converts_and_reruns(tmp_path):
  src, workdir = str(tmp_path / "src"), str(tmp_path / "zoo")
  make_cnn_zoo(src, activations=("relu", "tanh"), steps=(0, 1))
  command = [
    sys.executable,
    "-m",
    "zoo_jax.convert",
    "--from=cnn_zoo",
    f"--src={src}",
    f"--workdir={workdir}",
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  for _ in range(2):  # the second run finds the zoo complete
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "models            2 in 2 cohort(s)" in done.stdout and "ok 2" in done.stdout
  assert zoo.Zoo(workdir).epochs == [0, 1]
  bad = subprocess.run(
    command[:4] + [f"--src={tmp_path}", f"--workdir={tmp_path / 'other'}"],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
  )
  assert bad.returncode != 0 and "weights.npy is missing" in bad.stderr
