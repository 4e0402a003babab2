"""sample under faults: a rerun with another config, a zoo that grew, the wrong folder as --encoder, a
workdir that is a file. Each ends correct or refused in one line; the samples already written are kept
and `zoo check` passes on them."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from commands import (
  assert_file_as_workdir_is_one_line,
  file_bytes,
)
from test_faults_encode import _zoo_config
from test_sample import _config as sample_test_config
from zoo_jax import errors, sample, train, zoo


def _config(**overrides):
  """test_sample's config cut to one sampler, no baselines, 2 samples of one seed."""
  return sample_test_config(
    **{"samplers": ("kde",), "baselines": (), "num_samples": 2, "num_seeds": 1, **overrides}
  )


@pytest.mark.slow
def test_a_rerun_with_another_config_is_refused_before_anything_is_written(encoder_dir, tmp_path):
  out = str(tmp_path / "out")
  sample.sample_and_evaluate(_config(), encoder_dir, out)
  kept = file_bytes(out, zoo.MODELS_FILE, sample.SAMPLES_FILE, sample.SUMMARY_FILE)
  with pytest.raises(errors.UsageError, match=r"another sampling run .*num_samples"):
    sample.sample_and_evaluate(_config(num_samples=3), encoder_dir, out)
  assert file_bytes(out, *kept) == kept
  assert zoo.check(out).ok, str(zoo.check(out))
  # The same config again: complete, kept as it is.
  sample.sample_and_evaluate(_config(), encoder_dir, out)
  assert file_bytes(out, *kept) == kept


@pytest.mark.slow
def test_a_rerun_after_the_zoo_grew_labels_every_row_with_its_own_epoch(
  encoder_dir, tmp_path, capsys
):
  # A zoo of the encoder's architecture that grows between two runs of the same command.
  grown, out = str(tmp_path / "zoo"), str(tmp_path / "out")
  train.train_and_evaluate(_zoo_config(1), grown)
  c = _config(zoo=grown)
  sample.sample_and_evaluate(c, encoder_dir, out)
  train.train_and_evaluate(_zoo_config(2), grown)
  capsys.readouterr()
  sample.sample_and_evaluate(c, encoder_dir, out)
  assert "The zoo grew" in capsys.readouterr().out
  with open(os.path.join(out, "run.json")) as f:
    assert json.load(f)["read"][0]["epochs"] == "2"
  rows = pd.read_csv(os.path.join(out, sample.RECONSTRUCTION_FILE))
  assert set(rows["epoch"]) == {2}
  truth = zoo.Zoo(grown).metrics.set_index(["model_id", "epoch"])["test_acc"]
  np.testing.assert_allclose(
    rows["acc_original"],
    truth.loc[list(zip(rows["model_id"], rows["epoch"]))].to_numpy(),
    atol=1e-6,
  )
  assert zoo.check(out).ok, str(zoo.check(out))


def test_a_zoo_passed_as_the_encoder_is_named_for_what_it_is(small_zoo, tmp_path):
  with pytest.raises(errors.UsageError, match="is a zoo, not the workdir of an encode run"):
    sample.sample_and_evaluate(_config(), small_zoo, str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow
def test_a_workdir_that_is_a_file_is_one_line(encoder_dir, tmp_path):
  assert_file_as_workdir_is_one_line(
    tmp_path, "zoo_jax.sample", "--config=configs/sample.py", f"--encoder={encoder_dir}"
  )
