"""Workdirs written before the layout by stage still read back: a zoo and a hyperrep encode workdir.

tests/fixtures/legacy/ was written by zoo_jax as it was before the store, the engine and the
encoders became packages (2 CNN-s on mnist5k, 1 epoch; a tiny hyperrep autoencoder on them, its
resume checkpoints and plot left out to keep it small). expected.json holds what that code read.
"""

import json
import os
import shutil

import numpy as np
import pytest

from zoo_jax import train, zoo
from zoo_jax.encoders import ENCODER_DIR
from zoo_jax.encoders.methods import hyperrep
from zoo_jax.encoders.states import load_states
from zoo_jax.engine.train_config import stored_config

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "legacy")


@pytest.fixture
def legacy(tmp_path):
  """A writable copy of the fixture (commands may take the workdir's lock)."""
  shutil.copytree(FIXTURE, tmp_path / "legacy")
  with open(tmp_path / "legacy" / "expected.json") as f:
    return str(tmp_path / "legacy"), json.load(f)


def test_the_zoo_reads_back_as_it_did(legacy):
  root, expected = legacy
  z = zoo.Zoo(os.path.join(root, "zoo"))
  assert z.epochs == expected["epochs"]
  assert z.models["model_id"].tolist() == expected["models"]
  np.testing.assert_array_equal(z.metrics["test_acc"].to_numpy(), expected["test_acc"])
  for epoch in z.epochs:
    np.testing.assert_allclose(
      np.float64(z.flat(epoch=epoch)).sum(), expected["flat_sum"][str(epoch)], rtol=1e-12
    )
  assert zoo.check(os.path.join(root, "zoo")).ok


def test_the_train_command_finds_the_zoo_complete(legacy, capsys):
  root, _ = legacy
  workdir = os.path.join(root, "zoo")
  before = {
    name: open(os.path.join(workdir, name)).read() for name in (zoo.MODELS_FILE, zoo.METRICS_FILE)
  }
  train.train_and_evaluate(stored_config(workdir), workdir)
  assert "is complete" in capsys.readouterr().out
  assert before == {name: open(os.path.join(workdir, name)).read() for name in before}


def test_the_encoder_workdir_reads_back_and_embeds_as_stored(legacy):
  root, _ = legacy
  model, params, spec, info = hyperrep.load(os.path.join(root, "encoder", ENCODER_DIR))
  states = load_states(os.path.join(root, "zoo"))
  assert spec == states.spec
  stored = np.load(os.path.join(root, "encoder", "embeddings.npz"))
  np.testing.assert_array_equal(stored["zoo/model_id"], states.table["model_id"].to_numpy())
  z = np.asarray(hyperrep.make_embed(model, spec)(params, states.flat))
  np.testing.assert_allclose(z, stored["zoo/embedding"], rtol=1e-5, atol=1e-5)
  assert len(info["history"]) == 2
