"""Sampling a zoo's own aligned weights: the pairs sampler, REPAIR, and the command without an
autoencoder."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import sample_aligned
from zoo_jax import samplers, sample, weights, zoo as zoo_lib
from zoo_jax.engine import grid
from zoo_jax.encoders.states import load_states
from zoo_jax.reuse import merging


def test_pairs_draws_mix_two_distinct_top_models_by_mix():
  embeddings = np.eye(10, dtype=np.float32)  # row i is e_i: a draw shows which rows it mixes
  scores = np.arange(10.0)  # the top 30%: rows 9, 8, 7
  draws = np.asarray(
    samplers.draw("pairs", jax.random.key(0), embeddings, scores, 64, {"mix": 0.3})
  )
  for d in draws:
    used = np.flatnonzero(d)
    assert set(used) <= {7, 8, 9} and len(used) == 2, d
    np.testing.assert_allclose(sorted(d[used]), [0.3, 0.7], rtol=1e-6)
  with pytest.raises(ValueError, match="mix"):
    samplers.draw("pairs", jax.random.key(0), embeddings, scores, 4, {"mix": 1.5})


@pytest.fixture(scope="module")
def space(tiny_zoo):
  """The aligned-weights space of the tiny zoo's tanh models at their last epoch."""
  config = sample_aligned.get_config()
  zoo, states = sample._selected_states(tiny_zoo, config, {})
  cohort = grid.cohort_of(states.table.iloc[0])
  scores = states.table["test_acc"].to_numpy()
  aligned = sample.AlignedWeights(zoo, states.flat, scores, states.spec, cohort, 200, 0)
  return aligned, states


def test_aligned_models_compute_the_same_functions(space):
  aligned, states = space
  original = weights.unflatten(jnp.asarray(states.flat), states.spec)
  moved = weights.unflatten(jnp.asarray(aligned.embeddings), states.spec)
  assert not np.allclose(aligned.embeddings, states.flat)  # some unit moved
  _, logits_a = aligned.evaluate.outputs(original, "test")
  _, logits_b = aligned.evaluate.outputs(moved, "test")
  np.testing.assert_allclose(logits_a, logits_b, atol=1e-4)


def test_repair_sets_the_target_statistics_and_keeps_a_model_at_its_own(space):
  aligned, states = space
  params = weights.unflatten(jnp.asarray(aligned.embeddings), states.spec)
  same = merging.repair(
    params, aligned.statistics, states.spec, aligned.evaluate, aligned.cohort, 2000
  )
  np.testing.assert_allclose(merging.flat(same), aligned.embeddings, atol=1e-4)
  mix = 0.5 * (aligned.embeddings[0] + aligned.embeddings[1])[None]
  w = aligned.mixing_weights(mix)
  np.testing.assert_allclose(w[0, :2], [0.5, 0.5], atol=1e-4)  # the pair, found back
  repaired = aligned.decode(mix, repair=True)
  stats = merging.channel_statistics(repaired, aligned.evaluate, aligned.cohort, 2000)
  for (mean, std), (target_mean, target_std) in zip(stats, aligned.statistics):
    np.testing.assert_allclose(mean[0], w[0] @ target_mean, atol=1e-3)
    np.testing.assert_allclose(std[0], w[0] @ target_std, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_the_command_samples_aligned_weights_without_an_autoencoder(tiny_zoo, tmp_path):
  config = sample_aligned.get_config()
  config.zoo = tiny_zoo
  config.num_samples, config.num_seeds, config.progress_bar = 3, 1, False
  config.samplers, config.baselines, config.noise_scales = ("pairs",), ("B_N",), (0.3,)
  config.finetune_epochs = 0  # evaluated as drawn: training is the engine's, tested elsewhere
  config.finetune.update(
    dict(init="kaiming_uniform", optimizer="adam", learning_rate=1e-3, weight_decay=0.0)
  )
  config.finetune.dropout = 0.0
  workdir = str(tmp_path / "samples")
  summary = sample.sample_and_evaluate(config, None, workdir)
  start = summary[summary["epoch"] == 0].set_index("method")
  assert {"pairs", "B_N0.3"} <= set(start.index)
  assert np.isfinite(start.loc["pairs", "test_acc"]) and start.loc["pairs", "novelty"] > 0
  assert not os.path.exists(os.path.join(workdir, sample.RECONSTRUCTION_FILE))
  sampled = zoo_lib.Zoo(workdir)
  rows = sampled.models[sampled.models["method"] == "pairs"]
  params = sampled.params(rows["model_id"].to_numpy(), 0)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
  # The draws themselves were kept, in the aligned space of the zoo's weights.
  draws = np.load(os.path.join(workdir, sample.SAMPLES_FILE))
  assert draws["embeddings"].shape[1] == load_states(tiny_zoo, [3]).spec.size


def test_the_latent_space_needs_an_encoder(tmp_path):
  from configs import sample as sample_config

  with pytest.raises(sample.errors.UsageError, match="--encoder is required"):
    sample.sample_and_evaluate(sample_config.get_config(), None, str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")  # refused before anything is written


def test_a_sliced_zoo_is_refused_in_one_line_naming_its_source(tiny_zoo, tmp_path):
  sliced = str(tmp_path / "slice")
  zoo_lib.slice_zoo(tiny_zoo, sliced, model_ids=[0, 1, 2], epochs=[3])
  config = sample_aligned.get_config()
  config.zoo = sliced
  with pytest.raises(sample.errors.UsageError, match="a slice of .*pass the zoo"):
    sample.sample_and_evaluate(config, None, str(tmp_path / "out"))


def test_aligned_weights_needs_a_zoo():
  config = sample_aligned.get_config()
  with pytest.raises(ValueError, match="config.zoo"):
    sample.validate_config(config)
  config.zoo = "/somewhere"
  config.space = "pixels"
  with pytest.raises(ValueError, match="config.space"):
    sample.validate_config(config)
