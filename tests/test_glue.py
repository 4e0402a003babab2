"""Model-GLUE: a router sends a planted task to its expert, stacking reads the experts' outputs, each
cluster keeps its best merge on validation, and a heterogeneous zoo is built and integrated end to end."""

import dataclasses
import json
import os

import ml_collections
import numpy as np
import pandas as pd
import pytest

from configs import glue as glue_config, glue_zoo
from zoo_jax import finetune, merge, zoo as zoo_lib
from zoo_jax.reuse import merging, mixture
from zoo_jax.reuse.mergers import Context, glue


def _one_hot_log_probs(labels, num_classes, sharpness=5.0):
  return mixture.log_softmax(sharpness * np.eye(num_classes)[labels])


def _planted_tasks(n, seed):
  """Two tasks told apart by feature 0 of every expert's features; expert e is right on task e and
  answers the next class on the other."""
  rng = np.random.default_rng(seed)
  task, labels = rng.integers(0, 2, n), rng.integers(0, 3, n)
  features = rng.normal(size=(2, n, 4))
  features[:, :, 0] = (2 * task - 1) + 0.3 * rng.normal(size=(2, n))
  log_probs = np.stack(
    [_one_hot_log_probs(np.where(task == e, labels, (labels + 1) % 3), 3) for e in range(2)]
  )
  return task, labels, features, log_probs


def test_the_router_sends_a_planted_task_to_its_expert():
  task, labels, features, log_probs = _planted_tasks(400, seed=0)
  fit, held = slice(0, 300), slice(300, None)
  router = mixture.fit_router(features[:, fit], log_probs[:, fit], labels[fit], steps=300)
  gates = router.gates(features[:, held])
  np.testing.assert_allclose(gates.sum(1), 1.0, rtol=1e-5)
  to_own_expert = gates[np.arange(100), task[held]]
  assert to_own_expert.mean() > 0.9, to_own_expert.mean()
  mixed = mixture.mixture_log_probs(gates, log_probs[:, held]).argmax(-1)
  assert np.mean(mixed == labels[held]) > 0.95
  for e in range(2):  # each expert alone is right on its own task only
    assert np.mean(log_probs[e, held].argmax(-1) == labels[held]) < 0.7


def test_stacking_learns_an_expert_that_names_the_wrong_class():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 4, 600)
  shifted = _one_hot_log_probs((labels + 1) % 4, 4)[None]  # always one class off
  noise = _one_hot_log_probs(rng.integers(0, 4, 600), 4)[None]
  log_probs = np.concatenate([shifted, noise])
  stacker = mixture.fit_stacking(log_probs[:, :400], labels[:400])
  assert np.mean(mixture.stacking_predict(stacker, log_probs[:, 400:]) == labels[400:]) > 0.95
  assert np.mean(log_probs[0, 400:].argmax(-1) == labels[400:]) == 0.0


class _Evaluate:
  """A stand-in for merging.Evaluator: `accuracy(w)` of a model's weights, or its correct images."""

  def __init__(self, accuracy=None, correct=None):
    self.accuracy, self.correct_of = accuracy, correct

  def __call__(self, params, split):
    if self.accuracy is None:
      return None, self.correct(params, split).mean(1)
    return None, np.array([self.accuracy(w) for w in params["w"]])

  def correct(self, params, split):
    return np.stack([self.correct_of(w) for w in params["w"]])


def _context(models, evaluate, strategies, choose_on="all", num_clusters=2, aligned=None):
  params = {"w": np.asarray(models, np.float32)}
  config = ml_collections.ConfigDict(
    {
      "glue": {"num_clusters": num_clusters, "strategies": strategies, "choose_on": choose_on},
      "ties": {"density": 0.5},
    }
  )
  val = evaluate(params, "validation")[1]
  return Context(
    config=config,
    params=params,
    aligned=params if aligned is None else {"w": np.asarray(aligned, np.float32)},
    flat=params["w"],
    validation_acc=val,
    reference=int(np.argmax(val)),
    cluster=np.ones(len(models), int),
    spec=None,
    evaluate=evaluate,
  )


def test_each_cluster_keeps_the_merge_best_on_validation():
  # Cluster A (models 0-2, near 0): validation prefers model 0 itself, so the greedy soup of model 0
  # alone beats the plain average; cluster B (models 3-5, near 100): it prefers their average.
  rng = np.random.default_rng(0)
  models = np.concatenate([rng.normal(0, 1, (3, 5)), rng.normal(100, 1, (3, 5))])
  target_b = models[3:].mean(0)

  def accuracy(w):
    target = models[0] if w.mean() < 50 else target_b
    return -float(np.linalg.norm(w - target))

  merged = glue.merge(_context(models, _Evaluate(accuracy), ("uniform_soup", "greedy_soup")))
  by_members = {tuple(sorted(m.ingredients)): m for m in merged}
  assert set(by_members) == {(0,), (3, 4, 5)}, [m.method for m in merged]
  assert by_members[(0,)].method.endswith("_greedy_soup")
  np.testing.assert_allclose(by_members[(0,)].params["w"], models[0])
  assert by_members[(3, 4, 5)].method.endswith("_uniform_soup")
  np.testing.assert_allclose(by_members[(3, 4, 5)].params["w"], target_b, rtol=1e-6)


def test_a_cluster_of_specialists_keeps_its_speciality_on_competence():
  # Ten validation images. Weights near 1 get images 0-3 right (the specialists' own); weights
  # near 0.5 get images 4-8 right, more images overall. The aligned average (0.5) wins on all
  # images; on the images the cluster's own models get right, the plain average (0.975) wins.
  def correct(w):
    hits = [0, 1, 2, 3] if w[0] >= 0.9 else [4, 5, 6, 7, 8] if w[0] >= 0.4 else [0, 1, 2]
    return np.isin(np.arange(10), hits)

  models, aligned = [[1.0], [0.95]], [[0.5], [0.5]]
  strategies = ("uniform_soup", "aligned_average")
  chosen = {
    choose_on: glue.merge(
      _context(models, _Evaluate(correct=correct), strategies, choose_on, 1, aligned)
    )[0]
    for choose_on in ("all", "competence")
  }
  assert chosen["all"].method.endswith("_aligned_average")
  assert chosen["competence"].method.endswith("_uniform_soup")
  np.testing.assert_allclose(chosen["competence"].params["w"], [0.975], rtol=1e-6)


def test_a_subset_context_has_its_own_reference_and_ancestor():
  rng = np.random.default_rng(0)
  models = rng.normal(size=(4, 3))
  accuracy = lambda w: float(w[0])
  context = _context(models, _Evaluate(accuracy), ("uniform_soup",))
  context = dataclasses.replace(
    context,
    ancestors={"w": np.repeat(np.arange(2.0), 2)[:, None] * np.ones(3)},
    source=np.array([0, 0, 1, 1]),
  )
  assert context.ancestor is None  # two ancestors
  part = context.subset([2, 3])
  assert part.num_models == 2 and part.reference == int(np.argmax(models[2:, 0]))
  np.testing.assert_allclose(part.ancestor["w"], np.ones(3))


def test_bad_glue_fields_are_one_line(tmp_path):
  c = glue_config.get_config()
  c.glue.strategies = ("uniform_soup", "glue")
  with pytest.raises(ValueError, match=r"config.glue.strategies has \['glue'\]"):
    merge.validate_config(c)
  c = glue_config.get_config()
  c.glue.choose_on = "best"
  with pytest.raises(ValueError, match=r"config.glue.choose_on 'best' is unknown"):
    merge.validate_config(c)
  c = glue_config.get_config()
  c.glue.num_clusters = 0
  with pytest.raises(ValueError, match="config.glue.num_clusters must be an integer >= 1"):
    merge.validate_config(c)


def _tiny_glue_zoo_config():
  c = glue_zoo.get_config()
  c.ancestor.dataset.train_size = 500
  c.ancestor.dataset.eval_size = 200
  c.ancestor.num_epochs = 2
  c.ancestor.batch_size = 25
  c.ancestor.progress_bar = False
  c.finetune.domains = ("mnist5k", "mnist5k_invert")
  c.finetune.num_epochs = 1
  c.finetune.train_size = 500
  return c


@pytest.mark.slow
def test_a_heterogeneous_zoo_is_merged_per_cluster_and_integrated(tmp_path):
  zoo_dir, out = str(tmp_path / "zoo"), str(tmp_path / "glue")
  finetune.finetuned_zoo(_tiny_glue_zoo_config(), zoo_dir)
  zoo = zoo_lib.Zoo(zoo_dir)
  table = zoo.models
  assert len(table) == 8  # 2 ancestors x 2 domains x 2 seeds
  assert sorted(table["finetune_domain"].unique()) == ["mnist5k", "mnist5k_invert"]
  assert sorted(table["source_model"].unique()) == [0, 1]
  # Each model is its domain's fine-tune: the union zoo holds the final weights of each domain's run.
  run = zoo_lib.Zoo(os.path.join(zoo_dir, finetune.DOMAINS_DIR, "mnist5k_invert"))
  inverted = table.index[table["finetune_domain"] == "mnist5k_invert"].to_numpy()
  for a, b in zip(
    merging.flat(zoo.params(inverted, 0)), merging.flat(run.params(run.models["model_id"], -1))
  ):
    np.testing.assert_array_equal(a, b)
  zoo.close(), run.close()

  c = glue_config.get_config()
  c.eval_size = 300
  c.glue.num_clusters = 4
  c.glue.router.steps = 200
  merge.merge_and_evaluate(c, zoo_dir, out)
  result = pd.read_csv(os.path.join(out, merge.GLUE_FILE))
  assert {"mixture", "stacking", "expert_ensemble", "oracle_routing"} <= set(result["method"])
  assert {"test_acc_mnist5k", "test_acc_mnist5k_invert"} <= set(result.columns)
  assert result["method"].str.startswith(glue.PREFIX).sum() == 4
  routing = pd.read_csv(os.path.join(out, merge.ROUTING_FILE)).set_index("domain")
  np.testing.assert_allclose(routing.sum(1), 1.0, atol=1e-3)
  summary = json.load(open(os.path.join(out, merge.SUMMARY_JSON)))["glue"]
  assert summary["domains"] == ["mnist5k", "mnist5k_invert"]
  # Task arithmetic across two ancestors is skipped; within a cluster it is a candidate.
  merged = pd.read_csv(os.path.join(out, merge.SUMMARY_FILE))
  assert not merged["method"].str.startswith("task_arithmetic").any()
  assert os.path.exists(os.path.join(out, merge.GLUE_PLOT))


@pytest.mark.parametrize(
  "domains, match",
  [
    (("mnist5k", "cifar10"), r"config.finetune.domains has 'cifar10' with 32x32x3 images"),
    (("mnist5k", "mnist5k_rot7"), r"config.finetune.domains has 'mnist5k_rot7', unknown"),
  ],
)
def test_bad_finetune_domains_are_one_line_and_nothing_is_written(tmp_path, domains, match):
  c = _tiny_glue_zoo_config()
  c.finetune.domains = domains
  with pytest.raises(ValueError, match=match):
    finetune.finetuned_zoo(c, str(tmp_path / "zoo"))
  assert not os.path.exists(tmp_path / "zoo" / "ancestor")
