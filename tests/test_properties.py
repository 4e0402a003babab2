"""Property prediction: splits never leak a model, targets round-trip, metrics and probes match references."""

import numpy as np
import pandas as pd
import pytest
import scipy.special
import scipy.stats
import sklearn.linear_model
import sklearn.metrics

from zoo_jax.encoders import properties
from zoo_jax import zoo


def _table(num_models=30, epochs=(0, 1, 2), zoo_name="a", seed=0):
  rng = np.random.default_rng(seed)
  rows = []
  for m in range(num_models):
    for e in epochs:
      rows.append(
        dict(
          zoo=zoo_name,
          model_id=m,
          epoch=e,
          test_acc=rng.uniform(),
          gen_gap=rng.normal(0, 0.05),
          learning_rate=[1e-3, 1e-4][m % 2],
          weight_decay=1e-4,
          dropout=[0.0, 0.5][m % 3 == 0],
          activation=["tanh", "relu", "gelu"][m % 3],
          init="uniform",
          optimizer="adam",
        )
      )
  return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_split_never_puts_a_model_on_both_sides(seed, fraction):
  table = pd.concat([_table(zoo_name="a"), _table(zoo_name="b", num_models=11)], ignore_index=True)
  is_test = properties.split_by_model(table, fraction, seed)
  keys = table["zoo"] + "/" + table["model_id"].astype(str)
  assert not set(keys[is_test]) & set(keys[~is_test])
  assert set(keys[is_test]) | set(keys[~is_test]) == set(keys)
  # Model 3 of zoo a and model 3 of zoo b are different models: they may land on different sides.
  num_models = keys.nunique()
  assert keys[is_test].nunique() == round(fraction * num_models)
  # Seeded: the same seed gives the same split, another seed another one.
  np.testing.assert_array_equal(is_test, properties.split_by_model(table, fraction, seed))
  assert not np.array_equal(is_test, properties.split_by_model(table, fraction, seed + 10))


def test_split_errors_name_the_field():
  with pytest.raises(ValueError, match="test_fraction"):
    properties.split_by_model(_table(), 1.0, 0)
  with pytest.raises(ValueError, match="at least 2 models"):
    properties.split_by_model(_table(num_models=1), 0.5, 0)
  with pytest.raises(ValueError, match="allowed values"):
    properties.check_properties(["accuracy"])


def test_targets_round_trip_and_skip_constants():
  table = _table()
  targets = properties.Targets(table, list(properties.PROPERTIES))
  # weight_decay, init and optimizer are constant in this table: nothing to predict.
  assert set(targets.skipped) == {"weight_decay", "init", "optimizer"}
  reg, cls = targets.encode(table)
  np.testing.assert_allclose(reg.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(reg.std(0), 1, atol=1e-5)
  # Outputs that are the encoded targets themselves (one-hot logits) decode to the truth.
  onehots = [np.eye(k)[cls[:, j]] for j, k in enumerate(targets.num_classes)]
  decoded = targets.decode(np.concatenate([reg, *onehots], axis=1))
  np.testing.assert_allclose(decoded["learning_rate"], np.log10(table["learning_rate"]), rtol=1e-5)
  np.testing.assert_allclose(decoded["test_acc"], table["test_acc"], rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(decoded["activation"], table["activation"])
  # A class unseen in training encodes as -1, which the loss ignores.
  other = table.copy()
  other.loc[0, "activation"] = "sigmoid"
  assert targets.encode(other)[1][0, targets.classification.index("activation")] == -1


def test_multitask_loss_matches_numpy():
  rng = np.random.default_rng(0)
  num_classes = (3, 2)
  outputs = rng.normal(size=(6, 2 + 5)).astype(np.float32)
  reg = rng.normal(size=(6, 2)).astype(np.float32)
  cls = np.array([[0, 1], [2, 0], [1, -1], [0, 0], [2, 1], [1, 1]], np.int32)
  expected = np.mean((outputs[:, :2] - reg) ** 2)
  start = 2
  for j, k in enumerate(num_classes):
    logits = outputs[:, start : start + k]
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    valid = cls[:, j] >= 0
    expected += -np.mean(logp[valid, cls[valid, j]])
    start += k
  got = properties.multitask_loss(outputs, reg, cls, num_classes)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_metrics_match_sklearn_and_scipy():
  rng = np.random.default_rng(0)
  y = rng.uniform(size=200)
  pred = y + rng.normal(0, 0.2, size=200)
  pred[:20] = pred[0]  # ties
  scores = properties.score("test_acc", y, pred)
  np.testing.assert_allclose(scores["r2"], sklearn.metrics.r2_score(y, pred), rtol=1e-10)
  np.testing.assert_allclose(
    scores["kendall_tau"], scipy.stats.kendalltau(y, pred).statistic, rtol=1e-10
  )
  labels = rng.choice(["tanh", "relu"], size=50)
  guess = labels.copy()
  guess[:10] = "gelu"
  assert properties.score("activation", labels, guess)["accuracy"] == pytest.approx(
    sklearn.metrics.accuracy_score(labels, guess)
  )
  with pytest.raises(ValueError, match="predictions"):
    properties.score("test_acc", y, pred[:-1])


@pytest.mark.parametrize("num_features", [5, 80])  # primal and dual (features > examples) solves
def test_ridge_probe_matches_sklearn(num_features):
  rng = np.random.default_rng(0)
  x, x_test = rng.normal(size=(40, num_features)) * 3 + 1, rng.normal(size=(7, num_features))
  y = x @ rng.normal(size=num_features) + rng.normal(size=40)
  mean, std = x.mean(0), x.std(0) + 1e-8
  reference = (
    sklearn.linear_model.Ridge(alpha=0.3).fit((x - mean) / std, y).predict((x_test - mean) / std)
  )
  np.testing.assert_allclose(
    properties.ridge_probe(x, y, x_test, alpha=0.3), reference, rtol=1e-6, atol=1e-8
  )


def test_probes_learn_a_learnable_property():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 4))
  y_reg = 2 * x[:, 0] - x[:, 1]
  y_cls = np.where(x[:, 2] > 0, "relu", "tanh")
  for kind in ("ridge", "gbt"):
    assert (
      properties.score(
        "test_acc", y_reg[200:], properties.fit_probe(kind, x[:200], y_reg[:200], x[200:])
      )["r2"]
      > 0.9
    )
    assert (
      properties.score(
        "activation", y_cls[200:], properties.fit_probe(kind, x[:200], y_cls[:200], x[200:])
      )["accuracy"]
      > 0.85
    )
  with pytest.raises(ValueError, match="allowed values"):
    properties.fit_probe("svm", x, y_reg, x)


def test_state_table_of_a_zoo(tiny_zoo):
  z = zoo.Zoo(tiny_zoo)
  table = properties.state_table(z)
  assert len(table) == len(z.models) * len(z.epochs)
  assert (table["status"] == zoo.STATUS_OK).all()
  assert set(table["epoch"]) == set(z.epochs)
  one = properties.state_table(z, epochs=[1, 99])
  assert set(one["epoch"]) == {1}
  with pytest.raises(ValueError, match="No stored epoch"):
    properties.state_table(z, epochs=[99])


@pytest.mark.parametrize("scaling", ["standard", "unit", "rank"])
@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_every_objective_decodes_its_own_targets(scaling, loss):
  if loss == "bce" and scaling == "standard":
    with pytest.raises(ValueError, match="needs targets in"):
      properties.Objective(scaling, loss).check()
    return
  table = _table()
  targets = properties.Targets(
    table, ["test_acc", "gen_gap", "learning_rate"], properties.Objective(scaling, loss)
  )
  reg, _ = targets.encode(table)
  if scaling != "standard":  # in [0, 1], as BCE needs
    assert reg.min() >= 0 and reg.max() <= 1
  if scaling == "rank":  # the training values' empirical CDF: uniform over (0, 1]
    np.testing.assert_allclose(
      np.sort(reg[:, 0]), np.arange(1, len(table) + 1) / len(table), atol=1e-6
    )
  outputs = scipy.special.logit(np.clip(reg, 1e-7, 1 - 1e-7)) if loss == "bce" else reg
  decoded = targets.decode(outputs)
  np.testing.assert_allclose(decoded["test_acc"], table["test_acc"], atol=1e-4)
  np.testing.assert_allclose(decoded["gen_gap"], table["gen_gap"], atol=1e-4)


def test_bce_loss_matches_numpy():
  rng = np.random.default_rng(1)
  outputs = rng.normal(size=(8, 2)).astype(np.float32)
  reg = rng.uniform(size=(8, 2)).astype(np.float32)
  p = 1 / (1 + np.exp(-outputs))
  expected = -np.mean(reg * np.log(p) + (1 - reg) * np.log(1 - p))
  got = properties.multitask_loss(outputs, reg, np.zeros((8, 0), np.int32), (), loss="bce")
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_ranking_loss_orders_a_planted_monotone_target():
  """A linear scorer trained on the ranking loss alone ranks by the hidden direction; the loss sees
  only the order of the targets, so a monotone transform of them changes nothing."""
  import jax
  import jax.numpy as jnp

  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 4)).astype(np.float32)
  y = np.exp(3 * (x @ np.array([1.0, -0.5, 0.0, 0.25], np.float32)))[:, None]  # monotone, skewed
  loss = lambda w, t: properties.ranking_loss(jnp.asarray(x) @ w, jnp.asarray(t))
  np.testing.assert_allclose(
    loss(jnp.ones((4, 1)), y), loss(jnp.ones((4, 1)), np.log(y)), rtol=1e-6
  )
  w = jnp.zeros((4, 1))
  grad = jax.jit(jax.grad(lambda w: loss(w, y)))
  for _ in range(200):
    w = w - 0.5 * grad(w)
  x_new = rng.normal(size=(256, 4)).astype(np.float32)
  y_new = np.exp(3 * (x_new @ np.array([1.0, -0.5, 0.0, 0.25], np.float32)))
  assert properties.kendall_tau(y_new, np.asarray(x_new @ w)[:, 0]) > 0.9
  assert float(loss(w, y)) < 0.5 * float(loss(jnp.zeros((4, 1)), y))
