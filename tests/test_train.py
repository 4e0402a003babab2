"""train_and_evaluate and the zoo store: smoke, resume == uninterrupted, refusals, bad input."""

import json
import os
import shutil

import jax
import numpy as np
import pandas as pd
import pytest

from configs import mnist5k
from zoo_jax import train, zoo
from zoo_jax.engine import train_config


def tiny_config(**overrides):
  c = mnist5k.get_config()
  c.population.num_seeds = 3
  c.population.grid.learning_rate = (1e-3, 3e-3)
  c.num_epochs = 2
  c.dataset.train_size = 500
  c.batch_size = 25
  c.progress_bar = False
  c.update_from_flattened_dict(overrides)  # dotted keys: {"dataset.train_size": 500}
  return c


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """An uninterrupted 3-epoch run of the tiny zoo."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  train.train_and_evaluate(tiny_config(num_epochs=3), workdir)
  return workdir


def assert_same_zoo(a, b):
  za, zb = zoo.Zoo(a), zoo.Zoo(b)
  assert za.epochs == zb.epochs
  pd.testing.assert_frame_equal(za.models, zb.models)
  pd.testing.assert_frame_equal(za.metrics, zb.metrics)
  for epoch in za.epochs:
    jax.tree.map(np.testing.assert_array_equal, za.params(epoch=epoch), zb.params(epoch=epoch))


def test_smoke_zoo_opens_with_expected_epochs_and_sane_values(reference):
  z = zoo.Zoo(reference)
  assert z.epochs == [0, 1, 2, 3]
  assert len(z.models) == 6 and set(z.models["learning_rate"]) == {1e-3, 3e-3}
  assert len(z.metrics) == 6 * 4
  for column in ("train_acc", "validation_acc", "test_acc"):
    assert z.metrics[column].between(0, 1).all()
  np.testing.assert_allclose(z.metrics["gen_gap"], z.metrics["train_acc"] - z.metrics["test_acc"])
  assert (z.metrics["status"] == "ok").all()
  last = z.metrics[z.metrics["epoch"] == 3]
  assert last["test_acc"].mean() > 0.5  # 3 epochs on 500 real digits learn something (chance: 0.1)
  flat = z.flat()
  assert flat.shape == (6, 2464) and np.all(np.isfinite(flat))
  assert not np.allclose(z.flat(epoch=0), flat)
  params = z.params([4, 1], epoch=2)
  assert params["conv_0"]["kernel"].shape == (2, 5, 5, 1, 8)
  np.testing.assert_array_equal(z.flat([4, 1], epoch=2), z.flat(epoch=2)[[4, 1]])
  assert list(z.select(learning_rate=3e-3)) == [3, 4, 5]
  good = z.select(min_test_acc=last["test_acc"].median())
  assert set(good) == set(last[last["test_acc"] >= last["test_acc"].median()]["model_id"])
  with open(os.path.join(reference, "config.json")) as f:
    assert json.load(f)["num_epochs"] == 3
  report = zoo.check(reference)  # tables equal to the checkpoints, arrays open and finite
  assert report.ok, str(report)


def test_zoo_reader_errors_are_clear(reference, tmp_path):
  z = zoo.Zoo(reference)
  with pytest.raises(ValueError, match="Epoch 9 is not in zoo.*available epochs"):
    z.params(epoch=9)
  with pytest.raises(ValueError, match="Unknown model ids \\[99\\]"):
    z.flat([0, 99])
  with pytest.raises(ValueError, match="Unknown model field 'colour'"):
    z.select(colour="red")
  with pytest.raises(FileNotFoundError, match="is not a zoo"):
    zoo.Zoo(str(tmp_path))


def test_rerun_of_a_finished_zoo_does_nothing(reference, capsys):
  before = {f: os.path.getmtime(os.path.join(reference, f)) for f in ("metrics.csv", "models.csv")}
  train.train_and_evaluate(tiny_config(num_epochs=3), reference)
  assert "complete" in capsys.readouterr().out
  assert before == {f: os.path.getmtime(os.path.join(reference, f)) for f in before}


def test_more_epochs_resumes_and_equals_uninterrupted(reference, tmp_path):
  workdir = str(tmp_path / "zoo")
  train.train_and_evaluate(tiny_config(num_epochs=1), workdir)
  assert zoo.Zoo(workdir).epochs == [0, 1]
  train.train_and_evaluate(tiny_config(num_epochs=3), workdir)
  assert_same_zoo(workdir, reference)


def test_corrupted_last_state_falls_back_with_a_warning(reference, tmp_path):
  workdir = str(tmp_path / "zoo")
  train.train_and_evaluate(tiny_config(num_epochs=2), workdir)
  # Damage every data file of the newest training state (epoch 2).
  for root, _, files in os.walk(os.path.join(workdir, "state", "2")):
    for name in files:
      if "manifest" in name or root.endswith("d"):
        with open(os.path.join(root, name), "r+b") as f:
          f.truncate(8)
  with pytest.warns(UserWarning, match="epoch 2.*unreadable.*falling back"):
    train.train_and_evaluate(tiny_config(num_epochs=3), workdir)
  assert_same_zoo(workdir, reference)


def test_a_different_config_is_refused_and_leaves_the_zoo_intact(reference, tmp_path):
  workdir = str(tmp_path / "zoo")
  shutil.copytree(reference, workdir)
  with pytest.raises(
    ValueError, match="different config.*population.grid.activation.*overwrite=True"
  ):
    train.train_and_evaluate(
      tiny_config(**{"population.grid.activation": ("relu",), "num_epochs": 3}), workdir
    )
  assert_same_zoo(workdir, reference)
  with pytest.warns(UserWarning, match="Overwriting"):
    train.train_and_evaluate(
      tiny_config(**{"population.grid.activation": ("relu",), "num_epochs": 1, "overwrite": True}),
      workdir,
    )
  z = zoo.Zoo(workdir)
  assert z.epochs == [0, 1] and set(z.models["activation"]) == {"relu"}


@pytest.mark.parametrize(
  "overrides,error,match",
  [
    ({"dataset.name": "imagenet"}, ValueError, "config.dataset.name 'imagenet'.*allowed values"),
    (
      {"dataset.source": "tfds"},
      ValueError,
      "config.dataset.source 'tfds'.*allowed values: \\['local'\\]",
    ),
    ({"model.arch": "resnet"}, ValueError, "config.model.arch 'resnet'.*allowed values"),
    (
      {"population.grid.activation": ("tanh", "swish")},
      ValueError,
      "config.population.grid.activation has unknown values \\['swish'\\].*allowed values",
    ),
    ({"population.grid.dropout": (1.5,)}, ValueError, "config.population.grid.dropout value 1.5"),
    ({"population.num_seeds": 0}, ValueError, "config.population.num_seeds must be >= 1"),
    ({"batch_size": 0}, ValueError, "config.batch_size must be an integer >= 1"),
    (
      {"eval_models_per_vmap": -1},
      ValueError,
      "config.eval_models_per_vmap must be None .* or an integer >= 0",
    ),
    (
      {"dataset.train_size": 10},
      ValueError,
      "config.dataset.train_size must be None.*>= config.batch_size",
    ),
    (
      {"dataset.preprocess.resize": "zoom"},
      ValueError,
      "config.dataset.preprocess.resize 'zoom' is unknown",
    ),
    (
      {"dataset.preprocess.mean": (0.5, 0.5, 0.5)},
      ValueError,
      "config.dataset.preprocess.mean has 3 values for 1",
    ),
    ({"lr_schedule": "cosine"}, ValueError, "config.lr_schedule 'cosine' is unknown.*'onecycle'"),
    (
      {"dataset.augment.crop_padding": -1},
      ValueError,
      "config.dataset.augment.crop_padding must be an integer >= 0",
    ),
    (
      {"dataset.augment.rotation": 400.0},
      ValueError,
      "config.dataset.augment.rotation must be degrees in \\[0, 180\\]",
    ),
  ],
)
def test_bad_config_values_are_clear_errors(overrides, error, match, tmp_path):
  with pytest.raises(error, match=match):
    train.train_and_evaluate(tiny_config(**overrides), str(tmp_path / "zoo"))
  assert not os.path.exists(tmp_path / "zoo")  # nothing written for a config that fails validation


def test_unknown_config_fields_are_errors(tmp_path):
  c = tiny_config()
  c.unlock()
  c.learning_rate = 0.1
  with pytest.raises(ValueError, match="Unknown config fields \\['learning_rate'\\]"):
    train.validate_config(c)
  c = tiny_config()
  c.population.unlock()
  c.population.grid.momentum = (0.9,)
  with pytest.raises(ValueError, match="Unknown config.population.grid fields \\['momentum'\\]"):
    train.validate_config(c)


def test_a_zoo_written_before_dataset_preprocess_existed_is_the_same_config(tmp_path):
  c = tiny_config()
  stored = json.loads(c.to_json())
  del stored["dataset"]["preprocess"]
  (tmp_path / zoo.CONFIG_FILE).write_text(json.dumps(stored))
  train_config.check_workdir(c, str(tmp_path))  # no "different config" error
  assert (
    train.stored_config(str(tmp_path)).dataset.preprocess.to_dict()
    == c.dataset.preprocess.to_dict()
  )
  c.dataset.preprocess.validation_size = 400
  with pytest.raises(ValueError, match="different config.*dataset.preprocess.validation_size"):
    train_config.check_workdir(c, str(tmp_path))


def test_a_zoo_written_before_schedules_and_augmentation_is_the_same_config(tmp_path):
  c = tiny_config()
  stored = json.loads(c.to_json())
  del stored["lr_schedule"], stored["dataset"]["augment"], stored["eval_models_per_vmap"]
  (tmp_path / zoo.CONFIG_FILE).write_text(json.dumps(stored))
  train_config.check_workdir(
    tiny_config(num_epochs=5), str(tmp_path)
  )  # more epochs: the same zoo, extended
  assert train.stored_config(str(tmp_path)).dataset.augment.to_dict() == c.dataset.augment.to_dict()
  (tmp_path / zoo.CONFIG_FILE).write_text(tiny_config(lr_schedule="onecycle").to_json())
  with pytest.raises(
    ValueError, match="different config.*num_epochs"
  ):  # a one-cycle schedule spans num_epochs
    train_config.check_workdir(tiny_config(lr_schedule="onecycle", num_epochs=5), str(tmp_path))


def test_unwritable_workdir_is_a_clear_error(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(ValueError, match="Cannot create --workdir.*writable --workdir"):
    train.train_and_evaluate(tiny_config(), str(blocker / "zoo"))


def test_corrupted_weights_step_is_a_clear_error_and_others_still_read(reference, tmp_path):
  workdir = str(tmp_path / "zoo")
  shutil.copytree(reference, workdir)
  for root, _, files in os.walk(os.path.join(workdir, "checkpoints", "1")):
    for name in files:
      if "manifest" in name or root.endswith("d"):
        with open(os.path.join(root, name), "r+b") as f:
          f.truncate(8)
  z = zoo.Zoo(workdir)
  with pytest.raises(ValueError, match="Checkpoint step 1 .* is unreadable"):
    z.params(epoch=1)
  np.testing.assert_array_equal(z.flat(epoch=2), zoo.Zoo(reference).flat(epoch=2))


def test_reader_sees_only_committed_epochs(reference, tmp_path):
  workdir = str(tmp_path / "zoo")
  shutil.copytree(reference, workdir)
  # A writer mid-way through epoch 4: an uncommitted orbax step and table rows ahead of it.
  os.makedirs(os.path.join(workdir, "checkpoints", "4.orbax-checkpoint-tmp-1234"))
  metrics = pd.read_csv(os.path.join(workdir, "metrics.csv"))
  extra = metrics[metrics["epoch"] == 3].assign(epoch=4)
  pd.concat([metrics, extra]).to_csv(os.path.join(workdir, "metrics.csv"), index=False)
  z = zoo.Zoo(workdir)
  assert z.epochs == [0, 1, 2, 3] and z.metrics["epoch"].max() == 3
  assert z.flat().shape == (6, 2464)


@pytest.mark.slow
def test_command_line_trains_a_zoo_that_zoo_reads(tmp_path):
  import subprocess
  import sys

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  workdir = str(tmp_path / "zoo")
  command = [
    sys.executable,
    "-m",
    "zoo_jax.train",
    "--config=configs/mnist5k.py",
    f"--workdir={workdir}",
    "--config.num_epochs=1",
    "--config.population.num_seeds=2",
    "--config.batch_size=25",
    "--config.dataset.train_size=500",
    "--config.population.grid.learning_rate=(1e-3,3e-3)",
  ]
  cache = (
    tmp_path / "xla_cache"
  )  # the commands' persistent compilation cache (cli.compilation_cache_dir)
  env = {**os.environ, "ZOO_JAX_COMPILATION_CACHE": str(cache)}
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=900, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "test accuracy" in result.stdout and workdir in result.stdout
  entries = sorted(os.listdir(cache))
  assert entries  # the training epoch's and the evaluation's executables
  # The same zoo again from the warm cache: the cached executables train the same weights.
  again = subprocess.run(
    [*command[:4], f"--workdir={tmp_path / 'again'}", *command[5:]],
    cwd=root,
    capture_output=True,
    text=True,
    timeout=900,
    env=env,
  )
  assert again.returncode == 0, again.stderr[-3000:]
  assert sorted(os.listdir(cache)) == entries
  assert_same_zoo(workdir, str(tmp_path / "again"))
  z = zoo.Zoo(workdir)
  assert z.epochs == [0, 1] and sorted(set(z.models["learning_rate"])) == [1e-3, 3e-3]
  assert len(z.models) == 4 and np.isfinite(z.flat()).all()
  check = subprocess.run(
    [sys.executable, "-m", "zoo_jax.zoo", "check", workdir],
    cwd=root,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert check.returncode == 0 and "result: ok" in check.stdout, check.stdout + check.stderr
  # A misspelt field is refused by the flag parser before anything runs: one line, exit code 2.
  bad = subprocess.run(
    command[:4] + ["--config.population.num_sedes=3"],
    cwd=root,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert (
    bad.returncode == 2 and "num_sedes" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
  )


def test_compilation_cache_dir_follows_the_environment(monkeypatch, tmp_path):
  from zoo_jax import cli

  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.delenv("ZOO_JAX_COMPILATION_CACHE", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert cli.compilation_cache_dir() == str(tmp_path / "zoo_jax" / "jax")  # on by default
  monkeypatch.setenv("ZOO_JAX_COMPILATION_CACHE", "off")
  assert cli.compilation_cache_dir() is None
  monkeypatch.setenv("ZOO_JAX_COMPILATION_CACHE", str(tmp_path / "mine"))
  assert cli.compilation_cache_dir() == str(tmp_path / "mine")
  monkeypatch.setenv(
    "JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax's")
  )  # JAX's own variable wins
  assert cli.compilation_cache_dir() == str(tmp_path / "jax's")


def test_cpu_xla_flags_use_a_device_count_that_divides_every_cohort():
  device_count = lambda config, cores: next(
    (f.split("=")[1] for f in train.cpu_xla_flags(config, cores) if "device_count" in f), None
  )
  assert device_count(tiny_config(), 2) == "2"  # one cohort of 6 models
  assert (
    device_count(tiny_config(), 4) == "3"
  )  # 4 would pad the cohort (and change the stored state's shape)
  assert (
    device_count(
      tiny_config(**{"population.num_seeds": 7, "population.grid.learning_rate": (1e-3,)}), 2
    )
    is None
  )
  assert train.cpu_xla_flags(tiny_config(shard=False), 16) == []
