"""Model selection end to end on a tiny zoo, its bad-input errors, and the ranking metrics."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from configs import select as select_config
from zoo_jax import select, zoo as zoo_lib
from zoo_jax.reuse import ranking, scores


def _config():
  c = select_config.get_config()
  c.probe_size = 60
  c.finetune.num_epochs = 1
  c.finetune.train_size = 50
  c.finetune.eval_size = 50
  c.learned.train_tasks = ("mnist5k_rot90", "mnist5k_invert")
  c.spider.steps = 50
  c.learned.predictor = "ridge"
  c.ensemble.sizes = (2,)
  c.ensemble.random_draws = 3
  return c


@pytest.mark.parametrize(
  "target, overrides, match",
  [
    ("imagenet", {}, r"--target 'imagenet' is unknown; allowed values"),
    (
      "fashion_mnist",
      {"methods": ("logme", "oracle")},
      "config.methods has 'oracle'; allowed values: " + re.escape(str(list(select.METHODS))),
    ),
    ("mnist5k_rot90", {}, r"config.learned.train_tasks contains the target"),
    (
      "fashion_mnist",
      {"learned.train_tasks": ("svhn",)},
      r"config.learned.train_tasks entry 'svhn'",
    ),
    (
      "fashion_mnist",
      {"learned.train_tasks": ("mnist5k_rot90",)},
      r"config.learned.train_tasks has 1 task\(s\); spider needs at least 2",
    ),
  ],
)
def test_bad_input_names_the_field(small_zoo, tmp_path, target, overrides, match):
  c = _config()
  c.update_from_flattened_dict(overrides)
  with pytest.raises(ValueError, match=match):
    select.select_and_evaluate(c, small_zoo, target, str(tmp_path))
  assert os.listdir(tmp_path) in (
    [],
    [".lock"],
  )  # nothing written before the check (its lock aside)


def test_methods_are_the_scores_registry_and_the_model_methods():
  assert select.FEATURE_METHODS == scores.names()
  assert select.METHODS == scores.names() + (
    "zero_shot",
    "source_acc",
    "short_finetune",
    "learned",
    "spider",
  )
  assert set(select_config.get_config().methods) == set(select.METHODS)


def test_ranking_metrics_match_scipy_and_hand_regret():
  rng = np.random.default_rng(3)
  truth = rng.uniform(size=40)
  predicted = truth + rng.normal(scale=0.2, size=40)
  m = ranking.ranking_metrics(predicted, truth)
  assert m["kendall_tau"] == pytest.approx(scipy.stats.kendalltau(predicted, truth).statistic)
  assert m["weighted_tau"] == pytest.approx(scipy.stats.weightedtau(predicted, truth).statistic)
  order = np.argsort(-predicted)
  assert m["top1_regret"] == pytest.approx(truth.max() - truth[order[0]])
  assert m["top5_regret"] == pytest.approx(truth.max() - truth[order[:5]].max())
  perfect = ranking.ranking_metrics(truth, truth)
  assert perfect["kendall_tau"] == pytest.approx(1.0) and perfect["top1_regret"] == 0.0


@pytest.mark.slow
def test_cli_unknown_target_is_one_line_and_exit_code_2(small_zoo, tmp_path):
  env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "zoo_jax.select",
      "--config=configs/select.py",
      f"--zoo={small_zoo}",
      "--target=cifar1000",
      f"--workdir={tmp_path}",
    ],
    capture_output=True,
    text=True,
    env=env,
    cwd=env["PYTHONPATH"],
  )
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [result.stderr.strip()]
  assert "--target 'cifar1000' is unknown" in result.stderr


@pytest.mark.slow
def test_select_writes_ranking_summary_ensembles(small_zoo, tmp_path):
  summary = select.select_and_evaluate(_config(), small_zoo, "fashion_mnist", str(tmp_path))
  ranking = pd.read_csv(tmp_path / select.RANKING_FILE)
  assert len(ranking) == 4 and ranking["finetuned_acc"].between(0, 1).all()
  assert {"model_id", *select.METHODS, "finetuned_acc"} <= set(ranking.columns)
  with open(tmp_path / select.SUMMARY_FILE) as f:
    on_disk = json.load(f)
  for method in select.METHODS:
    entry = on_disk["methods"][method]
    expected = scipy.stats.kendalltau(ranking[method], ranking["finetuned_acc"]).statistic
    assert entry["kendall_tau"] == pytest.approx(expected, nan_ok=True)
    assert {"weighted_tau", "top1_regret", "top5_regret", "seconds", "ratio_to_brute_force"} <= set(
      entry
    )
  for method in select.TRAINED_METHODS:
    assert on_disk["methods"][method]["train_tasks"] == ["mnist5k_rot90", "mnist5k_invert"]
  assert summary["brute_force"]["seconds"] > 0
  # The noise ceiling: the brute force again with other seeds, its own tau against the first run.
  ceiling = on_disk["noise_ceiling"]
  assert -1.0 <= ceiling["kendall_tau"] <= 1.0 and ceiling["seconds"] > 0
  again = pd.read_csv(tmp_path / select.REPEAT_DIR / "models.csv")
  first = pd.read_csv(tmp_path / select.FINETUNE_DIR / "models.csv")
  assert (again["seed"] - first["seed"] == select.ranking_lib.REPEAT_SEED_OFFSET).all()
  # The short fine-tune: a run of its own (other seeds, the brute force's recipe cut short), its
  # score each model's validation accuracy there.
  short = zoo_lib.Zoo(str(tmp_path / select.SHORT_DIR))
  assert (short.models["seed"] - first["seed"] == select.ranking_lib.SHORT_SEED_OFFSET).all()
  last = short.metrics[short.metrics["epoch"] == short.epochs[-1]].merge(
    short.models[["model_id", "source_model"]], on="model_id"
  )
  expected = ranking[["model_id"]].merge(
    last.rename(columns={"model_id": "short_id", "source_model": "model_id"}), on="model_id"
  )
  np.testing.assert_allclose(ranking["short_finetune"], expected["validation_acc"], rtol=1e-6)
  ensembles = pd.read_csv(tmp_path / select.ENSEMBLES_FILE)
  assert {"best_single_by_test", "random", "brute_force", "logme"} <= set(ensembles["method"])
  assert ensembles["test_acc"].between(0, 1).all()
  # The best single model's accuracy is recomputed from logits on the full test split: at least the
  # validation pick's.
  best = ensembles.loc[ensembles["method"] == "best_single_by_test", "test_acc"].item()
  assert (
    best >= ensembles.loc[ensembles["method"] == "best_single_by_validation", "test_acc"].item()
  )
  assert os.path.exists(tmp_path / select.PLOT_FILE)
