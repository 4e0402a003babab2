"""Merging: TIES against a plain loop, identical models merge to themselves, bad zoos are refused; the registry."""

import os
import re

import jax
import numpy as np
import pandas as pd
import pytest

from configs import merge as merge_config
from zoo_jax import merge, zoo as zoo_lib
from zoo_jax.reuse import finetuning, mergers, merging
from zoo_jax.reuse.mergers import ties


def test_ties_matches_a_plain_loop():
  rng = np.random.default_rng(0)
  tau = rng.normal(size=(3, 50))
  density = 0.4
  expected = np.zeros(50)
  trimmed = []
  for t in tau:  # keep each vector's 20 largest magnitudes
    keep = np.argsort(-np.abs(t))[:20]
    trimmed.append(np.where(np.isin(np.arange(50), keep), t, 0.0))
  trimmed = np.array(trimmed)
  for j in range(50):
    sign = np.sign(trimmed[:, j].sum())
    agree = [v for v in trimmed[:, j] if v != 0 and np.sign(v) == sign]
    expected[j] = np.mean(agree) if agree else 0.0
  np.testing.assert_allclose(ties.merge_vectors(tau, density), expected)


def test_interpolation_end_points_are_the_models():
  a, b = {"w": np.ones(3)}, {"w": np.zeros(3)}
  path = merging.interpolate(a, b, np.array([0.0, 0.25, 1.0]))
  np.testing.assert_allclose(path["w"], [[1, 1, 1], [0.75] * 3, [0, 0, 0]])


def _config(**overrides):
  c = merge_config.get_config()
  c.eval_size = 100
  c.interpolation.num_points = 3
  c.interpolation.num_pairs = 1
  c.update_from_flattened_dict(overrides)
  return c


@pytest.mark.slow
def test_merging_identical_models_returns_the_model(small_zoo, tmp_path):
  # A zoo of two copies of one model, written by the engine with num_epochs=0.
  source = zoo_lib.Zoo(small_zoo)
  table = finetuning.source_table(source, [0, 0])
  twins = str(tmp_path / "twins")
  finetuning.finetune(small_zoo, twins, table, dataset="mnist5k", num_epochs=0, eval_size=100)
  out = str(tmp_path / "merged")
  c = _config(ancestor=twins)  # the model as its own ancestor: zero task vectors
  summary = merge.merge_and_evaluate(c, twins, out)
  merged = zoo_lib.Zoo(out)
  assert set(summary["method"]) >= {"ingredient", "uniform_soup", "greedy_soup", "aligned_average"}
  assert any(m.startswith("task_arithmetic") for m in summary["method"])
  assert any(m.startswith("ties") for m in summary["method"])
  params = merged.params(merged.models["model_id"], epoch=0)
  model = source.params([0])
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, np.broadcast_to(y, x.shape), atol=1e-6),
    params,
    model,
  )
  accs = merged.metrics["test_acc"].to_numpy()
  np.testing.assert_allclose(accs, accs[0])
  assert os.path.exists(os.path.join(out, merge.BARRIER_FILE))
  barrier = pd.read_csv(os.path.join(out, merge.BARRIER_FILE))
  np.testing.assert_allclose(barrier["test_barrier"], 0.0, atol=1e-5)


def test_mixed_activations_are_refused_naming_the_field(small_zoo, tmp_path):
  with pytest.raises(ValueError, match=r"activation \['relu', 'tanh'\].*config.select.activation"):
    merge.merge_and_evaluate(_config(), small_zoo, str(tmp_path / "out"))


def test_mixed_architectures_are_refused_naming_the_field(small_zoo, tmp_path):
  # A real zoo of two architectures: the engine evaluates their initial weights (num_epochs=0).
  from zoo_jax.engine import grid
  from zoo_jax import train

  source = zoo_lib.Zoo(small_zoo)
  rows = source.models[source.models["activation"] == "relu"].drop(
    columns=["model_id", "cohort", "cohort_index"]
  )
  rows = rows.assign(arch=["cnn_s", "mlp"])
  config = train.stored_config(small_zoo)
  config.num_epochs, config.dataset.train_size, config.dataset.eval_size = 0, 50, 50
  mixed = str(tmp_path / "mixed")
  train.train_and_evaluate(config, mixed, models_table=grid.index_models(rows))
  with pytest.raises(ValueError, match=r"arch \['cnn_s', 'mlp'\].*config.select.arch"):
    merge.merge_and_evaluate(_config(), mixed, str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize(
  "overrides, match",
  [
    (
      {"methods": ("soup",)},
      "config.methods has 'soup'; allowed values: " + re.escape(str(list(mergers.names()))),
    ),
    ({"alignment": "cka"}, "config.alignment 'cka' is unknown"),
    ({"ties.density": 0.0}, r"config.ties.density must be in \(0, 1\]"),
  ],
)
def test_bad_config_names_the_field(small_zoo, tmp_path, overrides, match):
  with pytest.raises(ValueError, match=match):
    merge.merge_and_evaluate(_config(**overrides), small_zoo, str(tmp_path))


def test_evaluation_reads_the_data_as_the_zoo_was_trained_on_it():
  # A zoo whose config departs from the dataset's protocol (here its normalisation) is
  # evaluated with that departure, as train.py applied it; no zoo on disk is needed.
  from types import SimpleNamespace

  from zoo_jax import data, models
  from zoo_jax.engine import population

  dataset = {
    "name": "mnist5k",
    "source": "local",
    "data_dir": None,
    "split_seed": 3,
    "preprocess": {"mean": (0.5,), "std": (0.25,)},
  }
  zoo = SimpleNamespace(config={"dataset": dataset, "model": {"arch": "cnn_s"}})
  evaluator = merging.Evaluator(
    zoo, population.Cohort("cnn_s", "tanh", "adam", False), eval_size=None, seed=0
  )
  assert evaluator.normalization == ((0.5,), (0.25,))
  trained_on = data.load_as_zoo(dataset, "test", models.image_size("cnn_s"))
  np.testing.assert_array_equal(np.asarray(evaluator.splits["test"][0]), trained_on.images)


def test_every_merge_method_is_a_module_file_exposing_merge():
  folder = os.path.dirname(mergers.__file__)
  files = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))
  assert mergers.names() == tuple(files) == merge.METHODS
  # configs/merge.py names every method: a new file is used once the config names it.
  assert sorted(merge_config.get_config().methods) == files
  for name in mergers.names():
    assert callable(mergers.get(name).merge)
  assert [m for m in files if mergers.needs_ancestor(m)] == ["task_arithmetic", "ties"]


def test_unknown_merge_method_names_the_field_and_the_allowed_values():
  with pytest.raises(
    ValueError,
    match="config.methods entry 'soup' is unknown; allowed values: "
    + re.escape(str(list(mergers.names()))),
  ):
    mergers.get("soup")
