"""Shared fixtures: small real datasets, and the repo root on sys.path (for configs/)."""

import os
import sys

import pytest

# Share compiled XLA programs between tests and their subprocesses (each tiny zoo run would
# otherwise recompile the same epoch function); set before jax is imported.
os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR",
  os.path.join(
    os.environ.get("PYTEST_CACHE_ROOT", "/tmp"), f"zoo_jax_test_xla_cache_{os.getuid()}"
  ),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def mnist5k():
  from zoo_jax import data

  return {split: data.load("mnist5k", split) for split in data.SPLITS}


def tiny_zoo_config(dataset: str = "mnist5k"):
  """A 16-model hyperparameter zoo (2 activations x 2 optimizers x 2 lr x 2 seeds), 3 epochs."""
  from configs import mnist5k as base

  c = base.get_config()
  c.dataset.name = dataset
  c.dataset.train_size = 500
  c.dataset.eval_size = 500
  c.population.num_seeds = 2
  c.population.grid.activation = ("tanh", "relu")
  c.population.grid.optimizer = ("adam", "sgd")
  c.population.grid.learning_rate = (1e-3, 1e-2)
  c.num_epochs = 3
  c.batch_size = 25
  c.progress_bar = False
  return c


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory) -> str:
  """Workdir of a trained 16-model mnist5k zoo (epochs 0..3), shared by the weight-space tests."""
  from zoo_jax import train, zoo

  workdir = str(tmp_path_factory.mktemp("tiny_zoo"))
  train.train_and_evaluate(tiny_zoo_config(), workdir)
  assert zoo.check(workdir).ok, str(zoo.check(workdir))
  return workdir


@pytest.fixture(scope="session")
def tiny_zoo_fashion(tmp_path_factory) -> str:
  """The same grid on Fashion-MNIST (Debian's package): the second zoo of cross-dataset tests."""
  from zoo_jax import train, zoo

  workdir = str(tmp_path_factory.mktemp("tiny_zoo_fashion"))
  train.train_and_evaluate(tiny_zoo_config("fashion_mnist"), workdir)
  assert zoo.check(workdir).ok, str(zoo.check(workdir))
  return workdir


@pytest.fixture(scope="session")
def small_zoo(tmp_path_factory) -> str:
  """A 4-model mnist5k zoo (relu, tanh x 2 seeds), 1 epoch on 200 images: selection and merging tests."""
  from zoo_jax import train

  c = tiny_zoo_config()
  c.dataset.train_size = 200
  c.dataset.eval_size = 200
  c.population.grid.optimizer = ("adam",)
  c.population.grid.learning_rate = (3e-3,)
  c.num_epochs = 1
  workdir = str(tmp_path_factory.mktemp("small_zoo"))
  train.train_and_evaluate(c, workdir)
  return workdir


@pytest.fixture(scope="session")
def encoder_dir(tiny_zoo, tmp_path_factory) -> str:
  """Workdir of a hyperrep encode run on the tiny zoo (its autoencoder in encoder/): sampling tests."""
  from configs import hyperrep as hyperrep_config
  from zoo_jax import encode

  workdir = str(tmp_path_factory.mktemp("encoder"))
  c = hyperrep_config.get_config()
  c.num_seeds, c.predictors, c.progress_bar = 1, ("ridge",), False
  c.hyperrep.num_epochs, c.hyperrep.batch_size = 20, 16
  encode.encode_and_evaluate(c, [tiny_zoo], workdir)
  return workdir
