"""Domains (rotated and shifted digits) and ZooD: its score, its feature selection, the command."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from configs import zood as zood_config
from zoo_jax import data, select, train
from zoo_jax.data import domains
from zoo_jax.reuse import zood


# ---------------------------------------------------------------------------- domains


def test_rotated_domains_are_the_base_rotated_and_rot0_is_the_base():
  base = data.load("mnist5k", "test")
  rot0, rot45 = data.load("mnist5k_rot0", "test"), data.load("mnist5k_rot45", "test")
  np.testing.assert_array_equal(rot0.images, base.images)
  np.testing.assert_array_equal(rot45.labels, base.labels)
  assert rot45.images.dtype == np.uint8 and rot45.images.shape == base.images.shape
  assert not np.array_equal(rot45.images, base.images)
  # Rotated digits keep their ink: the same total brightness up to the bilinear blur.
  assert abs(rot45.images.sum() / base.images.sum() - 1) < 0.05
  again = data.load("mnist5k_rot45", "test")  # the same images on every load
  np.testing.assert_array_equal(again.images, rot45.images)
  noisy = data.load("mnist5k_noise", "test")
  assert 40 < np.std(noisy.images.astype(float) - base.images) < 80


def test_union_of_domains_carries_each_images_domain():
  union = domains.load_union(
    "mnist5k", ("mnist5k_rot0", "mnist5k_rot30"), "validation", source="local", seed=0
  )
  single = data.load("mnist5k", "validation")
  assert len(union) == 2 * len(single)
  np.testing.assert_array_equal(union.domain, np.repeat([0, 1], len(single)))
  np.testing.assert_array_equal(union.labels, np.tile(single.labels, 2))
  assert (union.mean, union.std) == (single.mean, single.std)
  index = np.array([0, len(single)])
  assert union.take(index).domain.tolist() == [0, 1]


@pytest.mark.parametrize(
  "names, match",
  [
    (("mnist5k_rot0", "mnist5k_rot12"), r"'mnist5k_rot12', unknown"),
    (("mnist5k_rot0", "mnist5k_rot0"), r"names a dataset twice"),
    (("mnist5k_rot0", "cifar10"), r"'cifar10' with 32x32x3 images .* domains must be one task"),
    ((), r"is empty"),
  ],
)
def test_bad_domains_are_one_line_naming_the_field(names, match):
  with pytest.raises(ValueError, match=match):
    domains.check(names, "config.dataset.domains")


def test_family_names_and_lists():
  assert domains.family("rotated_mnist5k")[-1] == "mnist5k_rot75"
  assert domains.family(["a", "b"]) == ("a", "b")
  with pytest.raises(ValueError, match=r"Unknown domain family 'rotated'; allowed values"):
    domains.family("rotated")


# ---------------------------------------------------------------------------- ZooD's parts


def test_feature_selection_keeps_a_planted_informative_feature_and_drops_noise():
  rng = np.random.default_rng(0)
  y = rng.integers(0, 10, 800)
  x = rng.normal(size=(800, 24))
  x[:, 3] += 2.0 * (y % 2)  # informative: parity
  x[:, 7] += 0.4 * y  # informative: the digit itself
  x[:, 11] = x[:, 3] + 0.01 * rng.normal(size=800)  # a near-copy of feature 3: redundant
  kept, inclusion = zood.select_features(x, y)
  assert kept[3] or kept[11]
  assert kept[7]
  noise = [j for j in range(24) if j not in (3, 7, 11)]
  assert not kept[noise].any(), inclusion[noise]
  assert not (kept[3] and kept[11])  # one of two copies explains the labels


def test_zood_score_prefers_features_stable_across_domains():
  rng = np.random.default_rng(1)
  labels = [rng.integers(0, 4, 300) for _ in range(3)]
  stable, unstable = [], []
  for d, y in enumerate(labels):
    signal = np.eye(4)[y] * 2.0
    stable.append(signal + rng.normal(size=(300, 4)))
    # As discriminative within each domain, but the class directions are shuffled per domain.
    unstable.append(signal[:, np.roll(np.arange(4), d)] + rng.normal(size=(300, 4)))
  noise = [rng.normal(size=(300, 4)) for _ in range(3)]
  s_stable = zood.zood_score(stable, labels)
  s_unstable = zood.zood_score(unstable, labels)
  s_noise = zood.zood_score(noise, labels)
  assert s_stable > s_noise > s_unstable or s_stable > s_unstable > s_noise
  assert s_stable > s_unstable + 0.05
  with pytest.raises(ValueError, match="at least 2 training domains"):
    zood.zood_score(stable[:1], labels[:1])


# ---------------------------------------------------------------------------- the command


def _config():
  c = zood_config.get_config()
  c.domains.names = ("mnist5k_rot0", "mnist5k_rot30", "mnist5k_rot60")
  c.domains.heldout = "mnist5k_rot60"
  c.probe_size = 80
  c.eval_size = 60
  c.top_k = 2
  c.finetune.num_epochs = 1
  c.finetune.train_size = 100
  c.finetune.eval_size = 60
  return c


@pytest.mark.parametrize(
  "overrides, target, match",
  [
    ({"domains.heldout": "mnist5k_rot45"}, None, r"config.domains.heldout 'mnist5k_rot45' is not"),
    ({"domains.names": ("mnist5k_rot0", "mnist5k_rot60")}, None, r"names has 1 .* at least 2"),
    ({"domains.names": None, "domains.family": "rotated"}, None, r"Unknown domain family"),
    ({"top_k": 0}, None, r"config.top_k must be a positive integer"),
    ({}, "fashion_mnist", r"--target 'fashion_mnist' with a domains config"),
  ],
)
def test_zood_bad_input_is_one_line_and_writes_nothing(
  small_zoo, tmp_path, overrides, target, match
):
  c = _config()
  c.update_from_flattened_dict(overrides)
  with pytest.raises(ValueError, match=match):
    select.select_and_evaluate(c, small_zoo, target, str(tmp_path))
  assert os.listdir(tmp_path) in ([], [".lock"])


@pytest.mark.slow
def test_zood_end_to_end_writes_ood_accuracies_and_rankings(small_zoo, tmp_path):
  summary = select.select_and_evaluate(_config(), small_zoo, None, str(tmp_path))
  with open(tmp_path / select.SUMMARY_FILE) as f:
    assert json.load(f)["ood_accuracy"] == summary["ood_accuracy"]
  ood = summary["ood_accuracy"]
  for key in ("zood_ensemble", "best_single", "brute_force", "zood_top1", "finetuned_oracle"):
    assert 0.0 <= ood[key] <= 1.0
  assert ood["brute_force"] <= ood["finetuned_oracle"]
  assert summary["training_domains"] == ["mnist5k_rot0", "mnist5k_rot30"]
  assert len(summary["zood_ensemble"]["models"]) == 2
  table = pd.read_csv(tmp_path / select.RANKING_FILE)
  assert len(table) == 4 and table[["zood", "ncc", "finetuned_acc"]].notna().all().all()
  # The fine-tuned zoo trained on the union of the training domains (train_size of it).
  tuned = pd.read_csv(tmp_path / select.FINETUNE_DIR / "models.csv")
  assert len(tuned) == 4
  with open(tmp_path / select.FINETUNE_DIR / "config.json") as f:
    assert json.load(f)["dataset"]["domains"] == ["mnist5k_rot0", "mnist5k_rot30"]
  assert os.path.exists(tmp_path / select.PLOT_FILE)
  assert -1.0 <= summary["noise_ceiling"]["kendall_tau"] <= 1.0


@pytest.mark.slow
def test_train_on_a_union_of_domains(tmp_path):
  from conftest import tiny_zoo_config

  c = tiny_zoo_config()
  c.population.grid.optimizer, c.population.grid.learning_rate = ("adam",), (3e-3,)
  c.population.grid.activation = ("relu",)
  c.num_epochs, c.dataset.train_size, c.dataset.eval_size = 1, 100, 50
  c.dataset.domains = ("mnist5k_rot0", "mnist5k_noise")
  zoo = train.train_and_evaluate(c, str(tmp_path))
  assert zoo.config["dataset"]["domains"] == ["mnist5k_rot0", "mnist5k_noise"]
  c.dataset.domains = ("mnist5k_rot0", "fashion_mnist_rot0", "cifar10")
  with pytest.raises(ValueError, match=r"config.dataset.domains has 'cifar10'"):
    train.train_and_evaluate(c, str(tmp_path / "bad"))


# ---------------------------------------------------------------------------- Model Spider


def test_spider_tokens_recover_a_planted_order_on_a_held_out_task():
  import scipy.stats

  from zoo_jax.reuse import fitting, spider

  rng = np.random.default_rng(0)
  models, tasks = rng.normal(size=(48, 10)), rng.normal(size=(9, 5))
  mixing = rng.normal(size=(10, 5))
  # Each task ranks the models by its own direction in model space: a planted bilinear fitness.
  accuracy = np.stack([models @ mixing @ t + 0.1 * rng.normal(size=48) for t in tasks])
  head, params = spider.fit_fitness(
    fitting.standardise(models), tasks[:8], accuracy[:8], steps=300, seed=0
  )
  predicted = spider.fitness(head, params, fitting.standardise(models), tasks[8])
  tau = scipy.stats.kendalltau(predicted, accuracy[8]).statistic
  assert tau > 0.5, tau
  # A token of another task ranks the held-out task's models worse.
  other = spider.fitness(head, params, fitting.standardise(models), -tasks[8])
  assert scipy.stats.kendalltau(other, accuracy[8]).statistic < 0


def test_spider_task_token_ignores_the_order_of_classes():
  from zoo_jax.reuse import spider

  rng = np.random.default_rng(1)
  labels = rng.integers(0, 5, 200)
  feats = rng.normal(size=(200, 6)) + labels[:, None] * np.linspace(0, 1, 6)
  relabelled = (labels + 2) % 5
  np.testing.assert_allclose(spider.task_token(feats, labels), spider.task_token(feats, relabelled))


def test_spider_reranking_keeps_candidates_on_top_and_orders_them_by_both_ranks():
  from zoo_jax.reuse import spider

  head = np.array([0.9, 0.8, 0.1, 0.7, 0.2])
  final = spider.rerank(head, np.array([0, 1, 3]), np.array([0.0, 1.0, 0.5]))
  order = np.argsort(-final)
  assert set(order[:3]) == {0, 1, 3} and list(order[3:]) == [4, 2]
  assert final[1] > final[0]  # 1: head rank 1 of 3 and best NCC; 0: best head rank, worst NCC
