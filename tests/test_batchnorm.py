"""Models with mutable state (BatchNorm's batch_stats) through the population engine, the store and the reader."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from kill9 import kill_when_exists
from zoo_jax import models, weights, zoo
from zoo_jax.engine import population
from zoo_jax.models.cnn import INITS, _ZooNet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TinyBN(_ZooNet):  # the constructor fields every architecture takes (models.get_model)
  """conv 4 -> BatchNorm -> relu -> mean pool -> dense: the smallest model with batch_stats."""

  @nn.compact
  def __call__(self, x, dropout_rate=0.0, dropout_key=None, train=False):
    x = nn.Conv(4, (3, 3), strides=(2, 2), kernel_init=INITS[self.init_method])(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(-3, -2)))


@pytest.fixture
def tiny_bn(monkeypatch):
  monkeypatch.setitem(models.ARCHITECTURES, "tiny_bn", TinyBN)
  # SGD: Adam turns float-noise gradients of near-zero into full steps, so "alone == in a cohort"
  # would only hold to lr, not to float precision.
  return population.Cohort("tiny_bn", "relu", "sgd", False)


def _population(cohort, seeds, shape=(28, 28, 1)):
  n = len(seeds)
  return population.create_population(
    cohort,
    np.asarray(seeds),
    np.array(["kaiming_uniform"] * n),
    np.full(n, 1e-2),
    np.zeros(n),
    np.zeros(n),
    shape,
  )


def test_train_epoch_updates_batch_stats_and_a_model_trains_alone_as_in_a_cohort(tiny_bn, mnist5k):
  train = mnist5k["train"]
  x, y = jnp.asarray(train.images[:60]), jnp.asarray(train.labels[:60])
  state = _population(tiny_bn, [3, 4, 5])
  assert set(state.model_state) == {"batch_stats"}
  epoch = population.make_train_epoch(
    tiny_bn, batch_size=10, num_train=60, mean=train.mean, std=train.std, models_per_vmap=0
  )
  trained, metrics = epoch(state, x, y)
  assert np.all(np.isfinite(np.asarray(metrics.loss)))
  before, after = (jax.tree.leaves(s.model_state) for s in (state, trained))
  assert all(not np.allclose(a, b) for a, b in zip(before, after))  # running statistics moved
  alone, _ = epoch(_population(tiny_bn, [4]), x, y)
  for got, want in zip(
    jax.tree.leaves((alone.params, alone.model_state)),
    jax.tree.leaves((trained.params, trained.model_state)),
  ):
    np.testing.assert_allclose(np.asarray(got)[0], np.asarray(want)[1], rtol=1e-4, atol=1e-5)


def test_evaluate_uses_the_running_statistics(tiny_bn, mnist5k):
  test = mnist5k["test"]
  state = _population(tiny_bn, [1, 2])
  stats = jax.tree.map(lambda s: s + 0.5, state.model_state)  # running stats unlike any batch's
  evaluate = population.make_evaluate(tiny_bn, batch_size=64, mean=test.mean, std=test.std)
  x, y = test.images[:100], test.labels[:100]
  got = evaluate(state.params, jnp.asarray(x), jnp.asarray(y), stats)
  model = TinyBN()
  for i in range(2):
    variables = jax.tree.map(lambda a: a[i], {"params": state.params, **stats})
    logits = model.apply(variables, population.normalize(jnp.asarray(x), test.mean, test.std))
    np.testing.assert_allclose(got.accuracy[i], np.mean(np.argmax(logits, -1) == y), atol=1e-6)
    nll = -np.mean(np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), y[:, None], -1))
    np.testing.assert_allclose(got.loss[i], nll, rtol=1e-5)
  other = evaluate(state.params, jnp.asarray(x), jnp.asarray(y), state.model_state)
  assert not np.allclose(other.loss, got.loss)


def test_flatten_and_statnn_work_on_resnet18_and_symmetry_refuses_it():
  model = models.get_model("resnet18", activation="relu", init="kaiming_uniform")
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  params = jax.tree.map(
    lambda s: np.random.default_rng(0).normal(size=(2,) + s.shape).astype(np.float32), shapes
  )
  vectors, spec = weights.flatten(params)
  assert vectors.shape == (2, 11_173_962)
  back = weights.unflatten(vectors, spec)
  jax.tree.map(np.testing.assert_array_equal, back, params)
  features = weights.statnn_features(params)
  assert features.shape[0] == 2 and np.all(np.isfinite(features))
  with pytest.raises(ValueError):
    weights.canonicalize(jax.tree.map(lambda a: a[0], params))


def _train_command(workdir):
  return [
    sys.executable,
    "-m",
    "zoo_jax.train",
    "--config=configs/mnist5k.py",
    f"--workdir={workdir}",
    "--config.model.arch=resnet18",
    "--config.population.grid.activation=('relu',)",
    # Two models (the acceptance of issue 16), one step an epoch: the cost is ResNet-18's compile and its 11M weights on disk.
    "--config.population.num_seeds=2",
    "--config.dataset.train_size=10",
    "--config.dataset.eval_size=10",
    "--config.batch_size=10",
    "--config.eval_batch_size=10",
    "--config.num_epochs=1",
    "--config.progress_bar=False",
    "--config.conv_impl=xla",
    # the Model Zoos' ResNet-18 protocol: OneCycleLR and crop + flip, drawn per model
    "--config.lr_schedule=onecycle",
    "--config.dataset.augment.crop_padding=4",
    "--config.dataset.augment.horizontal_flip=True",
  ]


def _run(workdir, wait=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  proc = subprocess.Popen(
    _train_command(workdir),
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env=env,
  )
  if not wait:
    return proc
  out, err = proc.communicate(timeout=900)
  assert proc.returncode == 0, err[-3000:]
  return out


def _assert_same_variables(a, b):
  za, zb = zoo.Zoo(a), zoo.Zoo(b)
  assert za.epochs == zb.epochs == [0, 1]
  pd.testing.assert_frame_equal(za.metrics, zb.metrics)
  for epoch in za.epochs:
    va, vb = za.variables(epoch=epoch), zb.variables(epoch=epoch)
    assert set(va) == {"params", "batch_stats"}
    jax.tree.map(np.testing.assert_array_equal, va, vb)


@pytest.mark.slow
def test_resnet18_zoo_trains_through_the_command_and_resumes_after_kill9(tmp_path):
  reference = str(tmp_path / "reference")
  _run(reference)
  z = zoo.Zoo(reference)
  assert len(z.models) == 2 and z.epochs == [0, 1] and set(z.models["arch"]) == {"resnet18"}
  assert np.all((z.metrics["test_acc"] >= 0) & (z.metrics["test_acc"] <= 1))
  variables = z.variables(epoch=1)
  jax.tree.map(
    np.testing.assert_array_equal, variables["params"], z.params(epoch=1)
  )  # params stay params
  assert not np.allclose(
    variables["batch_stats"]["bn1"]["mean"], z.variables(epoch=0)["batch_stats"]["bn1"]["mean"]
  )
  # Killed while epoch 1 trains (epoch 0 committed), then resumed with the same command.
  workdir = str(tmp_path / "killed")
  kill_when_exists(_run(workdir, wait=False), os.path.join(workdir, "state", "0"))
  assert "Resuming the zoo" in _run(workdir)
  _assert_same_variables(workdir, reference)


def test_slice_copies_every_stored_collection(tiny_bn, monkeypatch, tmp_path):
  """`zoo slice` of a BatchNorm zoo keeps batch_stats beside params (a sliced model runs as trained)."""
  from test_train import tiny_config
  from zoo_jax import train

  monkeypatch.setitem(models.INPUT_SIZES, "tiny_bn", None)
  config = tiny_config(
    num_epochs=1,
    **{
      "model.arch": "tiny_bn",
      "dataset.train_size": 40,
      "dataset.eval_size": 20,
      "batch_size": 20,
      "population.num_seeds": 2,
    },
  )
  config.population.grid.activation, config.population.grid.optimizer = ("relu",), ("sgd",)
  src = train.train_and_evaluate(config, str(tmp_path / "zoo"))
  sliced = zoo.slice_zoo(src.workdir, str(tmp_path / "slice"), model_ids=[3, 0], epochs=[1])
  got, want = sliced.variables(epoch=1), src.variables([0, 3], epoch=1)
  assert set(got) == {"params", "batch_stats"}
  jax.tree.map(np.testing.assert_array_equal, got, want)
  assert not np.allclose(
    got["batch_stats"]["BatchNorm_0"]["mean"],
    src.variables([0, 3], epoch=0)["batch_stats"]["BatchNorm_0"]["mean"],
  )
