"""zoo_jax.encode: every method trains and predicts through the command; splits, scores, resume."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import sklearn.metrics

from configs import deepsets, flat, hyperrep, nfn, sne, statnn
from zoo_jax import encode
from zoo_jax.encoders.states import load_states

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fast(config, **overrides):
  config.progress_bar = False
  config.mlp.num_epochs = 5
  config.update_from_flattened_dict(overrides)  # dotted keys
  return config


@pytest.fixture(scope="module")
def statnn_run(tiny_zoo, tiny_zoo_fashion, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("enc_statnn"))
  config = _fast(statnn.get_config(), num_seeds=2, predictors=("gbt", "ridge"))
  results = encode.encode_and_evaluate(config, [tiny_zoo, tiny_zoo_fashion], workdir)
  return config, workdir, results


def test_results_cover_every_property_test_set_and_seed(statnn_run, tiny_zoo, tiny_zoo_fashion):
  config, workdir, results = statnn_run
  cross = f"cross:{os.path.basename(tiny_zoo_fashion)}"
  assert set(results["test_set"]) == {encode.IN_DISTRIBUTION, cross}
  assert set(results["predictor"]) == {"gbt", "ridge"}
  # The tiny zoo varies activation, optimizer and learning rate; weight decay, init, dropout are constant.
  assert set(results["property"]) == {
    "test_acc",
    "gen_gap",
    "epoch",
    "learning_rate",
    "activation",
    "optimizer",
  }
  assert (results["seeds"] == 2).all()
  per_seed = pd.read_csv(os.path.join(workdir, encode.PER_SEED_FILE))
  skipped = per_seed[per_seed["metric"].str.startswith("n/a")]
  assert set(skipped["property"]) == {"weight_decay", "init", "dropout"}
  # results.csv is the mean and std over seeds of results_per_seed.csv.
  scored = per_seed.dropna(subset=["value"])
  grouped = scored.groupby(["predictor", "test_set", "property", "metric"])["value"]
  merged = results.set_index(["predictor", "test_set", "property", "metric"])
  np.testing.assert_allclose(merged["mean"].sort_index(), grouped.mean().sort_index(), rtol=1e-12)
  np.testing.assert_allclose(merged["std"].sort_index(), grouped.std().sort_index(), rtol=1e-12)
  assert os.path.exists(os.path.join(workdir, "test_acc.png"))


def test_in_distribution_test_models_never_seen_in_training(statnn_run, tiny_zoo):
  config, workdir, _ = statnn_run
  predictions = pd.read_csv(os.path.join(workdir, encode.PREDICTIONS_FILE))
  test = predictions[predictions["test_set"] == encode.IN_DISTRIBUTION]
  states = load_states(tiny_zoo)
  from zoo_jax.encoders import properties

  is_test = properties.split_by_model(states.table, config.split.test_fraction, seed=0)
  assert set(test["model_id"]) == set(states.table["model_id"][is_test])
  assert not set(test["model_id"]) & set(states.table["model_id"][~is_test])
  # Every epoch of a held-out model is held out.
  assert len(test[test["predictor"] == "gbt"]) == is_test.sum()


def test_scores_match_sklearn_and_scipy_on_the_written_predictions(statnn_run):
  _, workdir, _ = statnn_run
  predictions = pd.read_csv(os.path.join(workdir, encode.PREDICTIONS_FILE))
  per_seed = pd.read_csv(os.path.join(workdir, encode.PER_SEED_FILE))
  seed0 = per_seed[per_seed["seed"] == 0].set_index(
    ["predictor", "test_set", "property", "metric"]
  )["value"]
  for (predictor, test_set), rows in predictions.groupby(["predictor", "test_set"]):
    y, p = rows["test_acc_true"], rows["test_acc_pred"]
    assert seed0[predictor, test_set, "test_acc", "r2"] == pytest.approx(
      sklearn.metrics.r2_score(y, p), abs=1e-9
    )
    assert seed0[predictor, test_set, "test_acc", "kendall_tau"] == pytest.approx(
      scipy.stats.kendalltau(y, p).statistic, abs=1e-9
    )
    assert seed0[predictor, test_set, "activation", "accuracy"] == pytest.approx(
      sklearn.metrics.accuracy_score(
        rows["activation_true"].astype(str), rows["activation_pred"].astype(str)
      )
    )


def test_a_finished_run_is_not_redone_and_another_config_is_refused(
  statnn_run, tiny_zoo, tiny_zoo_fashion
):
  config, workdir, results = statnn_run
  before = os.path.getmtime(os.path.join(workdir, encode.PER_SEED_FILE))
  again = encode.encode_and_evaluate(config, [tiny_zoo, tiny_zoo_fashion], workdir)
  pd.testing.assert_frame_equal(again, results)
  assert os.path.getmtime(os.path.join(workdir, encode.PER_SEED_FILE)) == before
  other = _fast(statnn.get_config(), num_seeds=3)
  with pytest.raises(ValueError, match="another config"):
    encode.encode_and_evaluate(other, [tiny_zoo, tiny_zoo_fashion], workdir)


@pytest.mark.parametrize(
  "overrides, match",
  [
    ({"method": "nfm"}, "config.method .* allowed values"),
    ({"mlp.loss": "hinge"}, "config.mlp.loss .* allowed values"),
    (
      {"mlp.targets": "standard", "mlp.loss": "bce"},
      "config.mlp.loss='bce' needs targets in \\[0, 1\\]",
    ),
    ({"mlp.targets": "quantile"}, "config.mlp.targets .* allowed values"),
    ({"mlp.validation_fraction": 1.0}, "config.mlp.validation_fraction must be in \\[0, 1\\)"),
    ({"properties": ("accuracy",)}, "config.properties .* allowed values"),
    ({"predictors": ("svm",)}, "config.predictors .* allowed values"),
    ({"split.train_zoos": 3}, "config.split.train_zoos must be an integer in \\[1, 2\\]"),
    ({"num_seeds": 0}, "config.num_seeds"),
    ({"split.train_models": 0}, "config.split.train_models must be None"),
    ({"split.protocol": "nfn"}, "config.split.protocol .* allowed values"),
  ],
)
def test_bad_config_names_the_field(overrides, match, tiny_zoo, tmp_path):
  config = _fast(statnn.get_config(), **overrides)
  with pytest.raises(ValueError, match=match):
    encode.encode_and_evaluate(config, [tiny_zoo, tiny_zoo], str(tmp_path))
  assert not os.listdir(tmp_path)  # nothing written for a refused config


def test_every_method_is_a_file_of_the_methods_folder_with_a_config():
  from zoo_jax.encoders import methods

  assert methods.names() == ("deepsets", "flat", "hyperrep", "nfn", "sne", "statnn")
  for module in (statnn, flat, deepsets, nfn, sne, hyperrep):
    method = methods.get(module.get_config().method)
    assert isinstance(method, (methods.FeatureMethod, methods.DirectMethod))
  # Feature methods need predictors; the cross-architecture ones read other architectures' zoos.
  assert (
    isinstance(methods.get("hyperrep"), methods.FeatureMethod)
    and methods.get("hyperrep").embeddings
  )
  assert {n for n in methods.names() if methods.get(n).cross_architecture} == {"statnn", "sne"}


@pytest.mark.slow
@pytest.mark.parametrize(
  "module, overrides",
  [
    (flat, {"predictors": ("ridge", "mlp")}),
    (deepsets, {"train.num_epochs": 2}),
    (
      nfn,  # with the rank-target, BCE and ranking objective and a validation split
      {
        "train.num_epochs": 3,
        "nfn.model.channels": (8, 8),
        "train.targets": "rank",
        "train.loss": "bce",
        "train.rank_weight": 1.0,
        "train.validation_fraction": 0.25,
      },
    ),
    (
      sne,
      {
        "train.num_epochs": 2,
        "sne.model.chunk_size": 16,
        "sne.model.d_model": 16,
        "sne.model.num_heads": 2,
      },
    ),
    (
      hyperrep,
      {"hyperrep.num_epochs": 2, "hyperrep.model.d_model": 32, "hyperrep.model.num_blocks": 1},
    ),
  ],
)
def test_every_method_trains_and_predicts(module, overrides, tiny_zoo, tiny_zoo_fashion, tmp_path):
  config = _fast(module.get_config(), num_seeds=1, **overrides)
  results = encode.encode_and_evaluate(config, [tiny_zoo, tiny_zoo_fashion], str(tmp_path))
  test_acc = results[(results["property"] == "test_acc") & (results["metric"] == "kendall_tau")]
  assert len(test_acc) and np.isfinite(test_acc["mean"]).all()
  assert set(test_acc["test_set"]) >= {encode.IN_DISTRIBUTION}
  if config.method in ("sne", "hyperrep", "nfn"):
    embeddings = np.load(os.path.join(tmp_path, "embeddings.npz"))
    key = f"{os.path.basename(tiny_zoo)}/embedding"
    assert embeddings[key].shape[0] == 16 * 4 and np.isfinite(embeddings[key]).all()


@pytest.mark.slow
def test_command_line(tiny_zoo, tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "zoo_jax.encode",
      "--config=configs/statnn.py",
      f"--zoo={tiny_zoo}",
      f"--workdir={tmp_path}",
      "--config.num_seeds=1",
      "--config.predictors=('ridge',)",
      "--config.progress_bar=False",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "kendall_tau" in out.stdout
  assert os.path.exists(os.path.join(tmp_path, encode.RESULTS_FILE))


@pytest.mark.slow
def test_small_cnn_zoo_protocol_end_to_end(tmp_path):
  """A Small CNN Zoo in its published layout, converted, then encoded under its protocol: final
  checkpoints only, and one fixed half of the models tested for every seed."""
  from cnn_zoo_files import make_cnn_zoo
  from zoo_jax import convert
  from zoo_jax.encoders import properties

  src, zoo_dir = str(tmp_path / "published"), str(tmp_path / "zoo")
  activations = ("relu", "tanh", "sigmoid", "gelu") * 5  # 20 models
  make_cnn_zoo(
    src,
    activations=activations,
    steps=(0, 1, 86),
    accuracy=lambda m, step: 0.1 + step / 200 + m / 100,
  )
  convert.convert("cnn_zoo", src, zoo_dir)
  config = _fast(statnn.get_config(), num_seeds=2, predictors=("gbt",))
  config.split.protocol = "small_cnn_zoo"
  config.properties = ("test_acc", "activation")
  workdir = str(tmp_path / "enc")
  results = encode.encode_and_evaluate(config, [zoo_dir], workdir)
  predictions = pd.read_csv(os.path.join(workdir, encode.PREDICTIONS_FILE))
  states = load_states(zoo_dir, (-1,))
  assert set(states.table["epoch"]) == {max(load_states(zoo_dir).table["epoch"])}
  assert set(predictions["epoch"]) == set(states.table["epoch"])  # the final checkpoints only
  tested = set(predictions["model_id"])
  assert len(tested) == 10 and tested == set(
    states.table["model_id"][properties.split_by_model(states.table, 0.5, seed=0)]
  )
  # Every seed tests the same models.
  splits = [encode.split_seed(config, states, [], seed)[0] for seed in (0, 1, 2)]
  assert all(np.array_equal(splits[0], s) for s in splits)
  tau = results[(results["property"] == "test_acc") & (results["metric"] == "kendall_tau")]
  assert (tau["seeds"] == 2).all() and np.isfinite(tau["mean"]).all()
  config.epochs = (0, 1)
  with pytest.raises(ValueError, match="final checkpoints only"):
    encode.encode_and_evaluate(config, [zoo_dir], str(tmp_path / "other"))


@pytest.fixture(scope="module")
def tiny_zoo_l(tmp_path_factory):
  """The tiny zoo's grid with CNN-l (digits at 32x32), 1 epoch: another architecture."""
  from conftest import tiny_zoo_config
  from zoo_jax import train

  c = tiny_zoo_config()
  c.model.arch = "cnn_l"
  c.num_epochs = 1
  workdir = str(tmp_path_factory.mktemp("tiny_zoo_l"))
  train.train_and_evaluate(c, workdir)
  return workdir


@pytest.mark.slow
def test_sne_and_statnn_train_on_a_mixed_architecture_pool(tiny_zoo, tiny_zoo_l, tmp_path):
  """CNN-s and CNN-l pooled for training: both architectures are split by model, trained on and
  predicted; a method that reads one architecture is refused before anything is written."""
  sne_config = _fast(
    sne.get_config(),
    num_seeds=1,
    epochs=(0, 1),
    **{
      "split.train_zoos": 2,
      "train.num_epochs": 2,
      "sne.model.chunk_size": 16,
      "sne.model.d_model": 16,
      "sne.model.num_heads": 2,
      "sne.input_scaling": True,
    },
  )
  for name, config in (
    ("sne", sne_config),
    (
      "statnn",
      _fast(
        statnn.get_config(),
        num_seeds=1,
        epochs=(0, 1),
        predictors=("gbt",),
        **{"split.train_zoos": 2},
      ),
    ),
  ):
    workdir = str(tmp_path / name)
    results = encode.encode_and_evaluate(config, [tiny_zoo, tiny_zoo_l], workdir)
    assert set(results["test_set"]) == {encode.IN_DISTRIBUTION}
    tau = results[(results["property"] == "test_acc") & (results["metric"] == "kendall_tau")]
    assert np.isfinite(tau["mean"]).all()
    predictions = pd.read_csv(os.path.join(workdir, encode.PREDICTIONS_FILE))
    pool = {os.path.basename(tiny_zoo), os.path.basename(tiny_zoo_l)}
    assert set(predictions["zoo"]) == pool  # held-out models of both architectures
    assert np.isfinite(predictions["test_acc_pred"]).all()
  config = _fast(nfn.get_config(), num_seeds=1, **{"split.train_zoos": 2})
  with pytest.raises(ValueError, match="pools zoos of 2 architectures; method 'nfn' reads one"):
    encode.encode_and_evaluate(config, [tiny_zoo, tiny_zoo_l], str(tmp_path / "nfn"))
  assert not os.path.exists(os.path.join(tmp_path, "nfn", "config.json"))


def test_train_models_draws_training_models_and_keeps_the_test_models(tiny_zoo):
  states = load_states(tiny_zoo)
  config = statnn.get_config()
  is_test, is_train, train, _ = encode.split_seed(config, states, [], seed=0)
  config.split.train_models = 3
  sub_test, sub_train, sub, _ = encode.split_seed(config, states, [], seed=0)
  np.testing.assert_array_equal(sub_test, is_test)  # the same test models: a learning curve
  assert sub.table["model_id"].nunique() == 3 and len(sub.table) == sub_train.sum()
  assert not (sub_train & sub_test).any() and (sub_train <= is_train).all()
  config.split.train_models = 100
  with pytest.raises(ValueError, match="config.split.train_models must be None or an integer"):
    encode.split_seed(config, states, [], seed=0)
