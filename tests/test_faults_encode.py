"""encode under faults: its zoo grew or was retrained between runs, a failed start, folders that are not
what they should be, a zoo without a usable state. Each ends correct or refused in one line, never with
stale results presented as fresh."""

import json
import os

import pandas as pd
import pytest

from commands import (
  assert_file_as_workdir_is_one_line,
  file_bytes,
  one_error_line,
  run_command,
)
from configs import statnn
from conftest import tiny_zoo_config
from zoo_jax import encode, errors, train, zoo


def _zoo_config(num_epochs: int, **overrides):
  """4 models (tanh, adam, 2 learning rates x 2 seeds) on 200 images."""
  c = tiny_zoo_config()
  c.population.grid.activation, c.population.grid.optimizer = ("tanh",), ("adam",)
  c.dataset.train_size = c.dataset.eval_size = 200
  c.num_epochs = num_epochs
  c.update_from_flattened_dict(overrides)
  return c


def _statnn(**overrides):
  c = statnn.get_config()
  c.num_seeds, c.predictors, c.progress_bar = 1, ("ridge",), False
  c.properties = ("test_acc", "epoch")
  c.update_from_flattened_dict(overrides)
  return c


def _record(workdir):
  with open(os.path.join(workdir, zoo.CONFIG_FILE)) as f:
    return json.load(f)


@pytest.mark.slow
def test_a_rerun_after_the_zoo_grew_recomputes_from_the_newest_epochs_and_says_so(tmp_path, capsys):
  grown, out = str(tmp_path / "zoo"), str(tmp_path / "out")
  train.train_and_evaluate(_zoo_config(1), grown)
  encode.encode_and_evaluate(_statnn(), [grown], out)
  assert _record(out)["read"][0]["epochs"] == "0-1"
  assert pd.read_csv(os.path.join(out, encode.PREDICTIONS_FILE))["epoch"].max() == 1

  train.train_and_evaluate(_zoo_config(2), grown)  # the zoo grows by one epoch
  capsys.readouterr()
  encode.encode_and_evaluate(_statnn(), [grown], out)
  assert "The zoo grew" in capsys.readouterr().out
  read = _record(out)["read"][0]
  assert read["epochs"] == "0-2" and read["states"] == 12
  predictions = pd.read_csv(os.path.join(out, encode.PREDICTIONS_FILE))
  assert predictions["epoch"].max() == 2  # computed from the new states, not the old results
  # The same command once more: this run's results, kept as they are.
  before = file_bytes(out, encode.PER_SEED_FILE)
  encode.encode_and_evaluate(_statnn(), [grown], out)
  assert file_bytes(out, encode.PER_SEED_FILE) == before


@pytest.mark.slow
def test_fixed_epochs_of_a_retrained_zoo_are_refused_and_the_results_kept(tmp_path):
  source, out = str(tmp_path / "zoo"), str(tmp_path / "out")
  train.train_and_evaluate(_zoo_config(1), source)
  encode.encode_and_evaluate(_statnn(epochs=(0, 1)), [source], out)
  kept = file_bytes(out, zoo.CONFIG_FILE, encode.RESULTS_FILE)
  # Another zoo trained into the same folder: same path, same epochs, other weights.
  train.train_and_evaluate(
    _zoo_config(1, **{"population.first_seed": 7, "overwrite": True}), source
  )
  with pytest.raises(errors.UsageError, match=r"states of .* changed since it read them"):
    encode.encode_and_evaluate(_statnn(epochs=(0, 1)), [source], out)
  assert file_bytes(out, *kept) == kept


def test_a_failed_start_leaves_no_claim_and_the_corrected_command_runs(small_zoo, tmp_path):
  out = str(tmp_path / "out")
  with pytest.raises(FileNotFoundError, match="is not a zoo"):
    encode.encode_and_evaluate(_statnn(), [str(tmp_path / "typo")], out)
  assert not os.path.exists(out)
  encode.encode_and_evaluate(_statnn(), [small_zoo], out)
  assert _record(out)["read"][0]["zoo"] == os.path.abspath(small_zoo)


def test_an_encode_workdir_passed_as_a_zoo_is_named_for_what_it_is(small_zoo, tmp_path):
  first = str(tmp_path / "first")
  encode.encode_and_evaluate(_statnn(), [small_zoo], first)
  with pytest.raises(errors.UsageError, match="holds the results of zoo_jax.encode"):
    encode.encode_and_evaluate(_statnn(), [first], str(tmp_path / "second"))
  assert not os.path.exists(tmp_path / "second")


@pytest.mark.slow
def test_a_zoo_whose_models_all_diverged_is_one_clear_error(tmp_path):
  diverged = str(tmp_path / "zoo")
  trained = train.train_and_evaluate(
    _zoo_config(
      1,
      **{
        "population.grid.learning_rate": (1e30,),
        "population.grid.optimizer": ("sgd",),
        "population.grid.activation": ("relu",),
      },
    ),
    diverged,
  )
  assert (trained.metrics[trained.metrics["epoch"] == 1]["status"] == zoo.STATUS_DIVERGED).all()
  with pytest.raises(ValueError, match="no usable state at epochs \\[1\\].*diverged"):
    encode.encode_and_evaluate(_statnn(epochs=(1,)), [diverged], str(tmp_path / "out"))


@pytest.mark.slow
def test_bad_workdirs_and_config_files_are_one_line(small_zoo, tmp_path):
  assert_file_as_workdir_is_one_line(
    tmp_path, "zoo_jax.encode", "--config=configs/statnn.py", f"--zoo={small_zoo}"
  )
  broken = tmp_path / "broken.py"
  broken.write_text("def get_config(:\n")
  result, _ = run_command(
    "zoo_jax.encode", f"--config={broken}", f"--zoo={small_zoo}", f"--workdir={tmp_path / 'o'}"
  )
  assert result.returncode == 2
  assert "syntax error at line 1" in one_error_line(result.stderr)
  assert not os.path.exists(tmp_path / "o")
  result, _ = run_command(
    "zoo_jax.encode",
    "--config=configs/statnn.py",
    "--config.predictor=ridge",
    f"--zoo={small_zoo}",
    f"--workdir={tmp_path / 'o'}",
  )
  assert result.returncode == 2
  assert "unknown config field 'predictor'" in one_error_line(result.stderr)
  assert "did you mean predictors" in result.stderr
