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
  assert np.count_nonzero(w[0]) == 2  # and nothing else: each state costs the fit a forward pass
  repaired = aligned.decode(mix, "repair")
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
  config.ensemble_size = 2
  config.changed.activation = "relu"
  config.transfer.dataset, config.transfer.train_size = "fashion_mnist", 100
  workdir = str(tmp_path / "samples")
  summary = sample.sample_and_evaluate(config, None, workdir)
  start = summary[(summary["epoch"] == 0) & (summary["setting"] == "in_distribution")]
  start = start.set_index("method")
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
  # Ensembles: the first two pairs models of the seed, logits averaged.
  test = sample.data.load_as_zoo(
    sampled.config["dataset"], "test", sample.models.image_size(rows["arch"].iloc[0])
  )
  _, logits = sample.ranking.population_outputs(sampled, rows["model_id"].to_numpy()[:2], 0, test)
  row = summary[(summary["setting"] == "in_distribution") & (summary["method"] == "pairs")]
  assert row["ensemble_acc"].item() == pytest.approx(
    sample.ranking.ensemble_accuracy(logits, test.labels)
  )
  # The same starting weights in relu networks.
  changed = zoo_lib.Zoo(os.path.join(workdir, sample.CHANGED_DIR))
  assert set(changed.models["activation"]) == {"relu"}
  assert set(changed.models["method"]) == {"pairs", "B_N0.3"}
  assert set(summary["setting"]) == {"in_distribution", "changed_activation", "transfer"}
  transfer = zoo_lib.Zoo(os.path.join(workdir, sample.TRANSFER_DIR))
  assert transfer.config["dataset"]["name"] == "fashion_mnist"
  assert summary.loc[summary["setting"] == "transfer", "ensemble_acc"].notna().all()
  relu_ids = changed.models[changed.models["method"] == "pairs"]["model_id"].to_numpy()
  for a, b in zip(jax.tree.leaves(changed.params(relu_ids, 0)), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


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


def test_fit_layers_keeps_a_teacher_and_regresses_a_mix_onto_its_teachers_outputs(space):
  aligned, states = space
  spec, ev, cohort = states.spec, aligned.evaluate, aligned.cohort
  teachers = aligned.aligned
  one = np.zeros((1, len(aligned.embeddings)))
  one[0, 2] = 1.0
  start = jax.tree.map(lambda a: a[2:3], teachers)
  same = merging.fit_layers(start, teachers, one, spec, ev, cohort, 500, ridge=0.0)
  np.testing.assert_allclose(merging.flat(same)[0], aligned.embeddings[2], atol=2e-3)
  mix = np.zeros((2, len(aligned.embeddings)))
  mix[0, :2] = mix[1, 2:4] = 0.5
  linear = aligned.decode(mix @ aligned.embeddings, "none")
  fitted = merging.fit_layers(linear, teachers, mix, spec, ev, cohort, 500)
  _, target = ev.outputs(teachers, "test")
  target = np.einsum("st,tnk->snk", mix, target)
  gap = lambda p: np.mean((ev.outputs(p, "test")[1] - target) ** 2)
  assert gap(fitted) < 0.8 * gap(linear), (gap(fitted), gap(linear))
  # Each model's own teachers (one at a time) or every teacher shared (all four at once, 4 x 2
  # weights >= 8 teachers): the same fit.
  mix4 = np.zeros((4, len(aligned.embeddings)))
  mix4[np.arange(4), np.arange(4)] = mix4[np.arange(4), np.arange(4) + 4] = 0.5
  start4 = aligned.decode(mix4 @ aligned.embeddings, "none")
  alone = merging.fit_layers(start4, teachers, mix4, spec, ev, cohort, 500, chunk=1)
  shared = merging.fit_layers(start4, teachers, mix4, spec, ev, cohort, 500, chunk=4)
  # One model alone or in a population: float32 reductions of another order (2.8e-4 measured on
  # jax 0.10.2).
  np.testing.assert_allclose(merging.flat(alone), merging.flat(shared), rtol=1e-3, atol=5e-4)


def test_ensemble_accuracy_averages_logits():
  labels = np.array([0, 1, 1])
  logits = np.array([[[2.0, 0], [0, 1], [1, 0]], [[1.0, 0], [0, 1], [0, 3]]])  # 2 models
  assert sample.ranking.ensemble_accuracy(logits[:1], labels) == pytest.approx(2 / 3)
  assert sample.ranking.ensemble_accuracy(logits, labels) == 1.0  # the second outvotes the first


def test_aligned_weights_needs_a_zoo():
  config = sample_aligned.get_config()
  with pytest.raises(ValueError, match="config.zoo"):
    sample.validate_config(config)
  config.zoo = "/somewhere"
  config.space = "pixels"
  with pytest.raises(ValueError, match="config.space"):
    sample.validate_config(config)
  config.space = "aligned_weights"
  config.changed.activation = "swish"
  with pytest.raises(ValueError, match="config.changed.activation .* allowed values"):
    sample.validate_config(config)


def test_more_alignment_rounds_keep_functions_and_bring_every_pair_closer(space):
  aligned, states = space
  params = jax.tree.map(np.asarray, weights.unflatten(jnp.asarray(states.flat), states.spec))
  config = sample_aligned.get_config()
  config.alignment = "activations"
  spread = {}
  for rounds in (1, 3):
    config.alignment_rounds = rounds
    moved = merging.align_to(params, 0, states.spec, config, aligned.cohort, aligned.evaluate)
    _, logits_a = aligned.evaluate.outputs(params, "test")
    _, logits_b = aligned.evaluate.outputs(moved, "test")
    np.testing.assert_allclose(logits_a, logits_b, atol=1e-4)
    flat = merging.flat(moved)
    spread[rounds] = np.mean([np.linalg.norm(a - b) for a in flat for b in flat])
  assert spread[3] <= spread[1] + 1e-6, spread
