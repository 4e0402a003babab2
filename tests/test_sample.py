"""zoo_jax.sample: decoded samples are networks, the engine starts from the given weights, the summary."""

import os

import jax
import numpy as np
import pandas as pd
import pytest

from configs import sample as sample_config
from zoo_jax import encode, sample, weights, zoo
from zoo_jax.engine import grid, population
from zoo_jax.encoders import ENCODER_DIR
from zoo_jax.encoders.methods import hyperrep
from zoo_jax.encoders.states import load_states


def _config(**overrides):
  c = sample_config.get_config()
  c.num_samples, c.num_seeds, c.finetune_epochs, c.progress_bar = 3, 2, 1, False
  c.sampler.gan_size = "small"
  # The tiny zoo mixes optimizers and learning rates: the fine-tuning setting is given.
  c.finetune.update(
    dict(
      activation="tanh",
      init="kaiming_uniform",
      optimizer="adam",
      learning_rate=1e-3,
      weight_decay=1e-4,
      dropout=0.0,
    )
  )
  c.update_from_flattened_dict(overrides)  # dotted keys
  return c


@pytest.fixture(scope="module")
def sampled(encoder_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("samples"))
  summary = sample.sample_and_evaluate(_config(), encoder_dir, workdir)
  return workdir, summary


def test_saved_encoder_round_trips(encoder_dir, tiny_zoo):
  model, params, spec, info = hyperrep.load(os.path.join(encoder_dir, ENCODER_DIR))
  states = load_states(tiny_zoo)
  assert spec == states.spec
  z = np.asarray(hyperrep.make_embed(model, spec)(params, states.flat))
  stored = np.load(os.path.join(encoder_dir, "embeddings.npz"))[f"{states.name}/embedding"]
  np.testing.assert_allclose(z, stored, rtol=1e-5, atol=1e-5)
  assert len(info["history"]) == 20


def test_samples_are_networks_evaluated_in_one_cohort(sampled):
  workdir, _ = sampled
  z = zoo.Zoo(workdir)
  assert z.models["cohort"].nunique() == 1  # one setting: one vmapped, compiled program
  counts = z.models.groupby("method").size()
  noise = {f"B_N{v:g}": 6 for v in sample_config.get_config().noise_scales}
  assert (
    counts.to_dict()
    == {m: 3 * 2 for m in sample_config.get_config().samplers}
    | {
      "B_T": 6,
      "B_F": 3,
    }
    | noise
  )
  assert z.models["seed"].is_unique
  params = z.params(epoch=0)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
  first = z.metrics[z.metrics["epoch"] == 0]
  assert first["test_acc"].between(0, 1).all() and np.isfinite(first["test_loss"]).all()
  assert z.epochs == [0, 1]


def test_engine_starts_from_the_given_weights(sampled, tiny_zoo):
  workdir, _ = sampled
  z, source = zoo.Zoo(workdir), zoo.Zoo(tiny_zoo)
  # B_F: the zoo's own models, unchanged at epoch 0, with the very accuracy the zoo recorded.
  b_f = z.models[z.models["method"] == "B_F"]
  got = z.params(b_f["model_id"], epoch=0)
  want = source.params(b_f["source_model"].to_numpy(), epoch=-1)
  jax.tree.map(np.testing.assert_array_equal, got, want)
  acc = (
    z.metrics[(z.metrics["epoch"] == 0)]
    .set_index("model_id")
    .loc[b_f["model_id"], "test_acc"]
    .to_numpy()
  )
  recorded = (
    source.metrics[source.metrics["epoch"] == source.epochs[-1]]
    .set_index("model_id")
    .loc[b_f["source_model"], "test_acc"]
    .to_numpy()
  )
  np.testing.assert_allclose(acc, recorded, atol=1e-6)
  # B_T: exactly the engine's own init for those seeds.
  b_t = z.models[z.models["method"] == "B_T"]
  init = population.init_params(
    grid.cohort_of(b_t.iloc[0]), b_t["seed"].to_numpy(), b_t["init"].to_numpy(), (28, 28, 1)
  )
  jax.tree.map(
    np.testing.assert_array_equal,
    z.params(b_t["model_id"], epoch=0),
    jax.tree.map(np.asarray, init),
  )


def test_samples_are_the_decoded_draws(sampled, encoder_dir):
  workdir, _ = sampled
  z = zoo.Zoo(workdir)
  model, params, spec, _ = hyperrep.load(os.path.join(encoder_dir, ENCODER_DIR))
  kde = z.models[(z.models["method"] == "kde")]
  vector, _ = weights.flatten(z.params(kde["model_id"], epoch=0), spec)
  # Re-encoding a decoded sample lands near the latent region of the zoo (finite, same width).
  emb = np.asarray(hyperrep.make_embed(model, spec)(params, vector))
  assert emb.shape == (len(kde), model.latent_dim) and np.isfinite(emb).all()
  # Different seeds drew different samples.
  a, b = (vector[(kde["sample_seed"] == s).to_numpy()] for s in (0, 1))
  assert not np.allclose(a, b)


def test_summary_and_plot(sampled):
  workdir, summary = sampled
  noise = {f"B_N{v:g}" for v in sample_config.get_config().noise_scales}
  methods = set(sample_config.get_config().samplers) | {"B_T", "B_F", "zoo"} | noise
  assert set(summary["method"]) == methods
  for method in methods - {"zoo"}:
    rows = summary[summary["method"] == method]
    assert list(rows["epoch"]) == [0, 1]
  assert (
    summary.loc[summary["method"].isin(sample_config.get_config().samplers), "seeds"] == 2
  ).all()
  assert os.path.exists(os.path.join(workdir, sample.PLOT_FILE))
  assert os.path.getsize(os.path.join(workdir, sample.FRONTIER_FILE)) > 0
  on_disk = pd.read_csv(os.path.join(workdir, sample.SUMMARY_FILE))
  assert len(on_disk) == len(summary)


@pytest.mark.parametrize(
  "overrides, match",
  [
    ({"samplers": ("vae",)}, "config.samplers .* allowed values"),
    ({"baselines": ("B_X",)}, "config.baselines .* allowed values"),
    ({"num_samples": 0}, "config.num_samples"),
    ({"noise_scales": ()}, "config.noise_scales"),
    ({"noise_scales": (0.1, -1.0)}, "config.noise_scales"),
    ({"fit_on": "test"}, "config.fit_on .* allowed values"),
    ({"transfer.dataset": "imagenet"}, "config.transfer.dataset .* allowed values"),
    ({"finetune.activation": "relu"}, "config.finetune.activation"),
    ({"select.activation": "sigmoid"}, "keeps 0 states"),
  ],
)
def test_bad_config_names_the_field(overrides, match, encoder_dir, tmp_path):
  with pytest.raises(ValueError, match=match):
    sample.sample_and_evaluate(_config(**overrides), encoder_dir, str(tmp_path))


def test_reconstruction_is_checked_on_held_out_models(sampled, encoder_dir, tiny_zoo):
  workdir, _ = sampled
  table = pd.read_csv(os.path.join(workdir, sample.RECONSTRUCTION_FILE))
  assert list(table.columns) == ["model_id", "epoch", "held_out", "acc_original", "acc_decoded"]
  _, _, _, info = hyperrep.load(os.path.join(encoder_dir, ENCODER_DIR))
  held_out = {int(k.split("/")[1]) for k in info["held_out_models"]}
  assert table["held_out"].all() and set(table["model_id"]) <= held_out and len(table) > 0
  # acc_original is what the zoo recorded for those states (same data, same engine).
  recorded = zoo.Zoo(tiny_zoo).metrics.set_index(["model_id", "epoch"])["test_acc"]
  np.testing.assert_allclose(
    table["acc_original"], recorded.loc[list(zip(table["model_id"], table["epoch"]))], atol=1e-6
  )
  assert table["acc_decoded"].between(0, 1).all()


def test_untrained_autoencoder_triggers_the_retention_warning(encoder_dir, tiny_zoo, tmp_path):
  model, trained_params, spec, info = hyperrep.load(os.path.join(encoder_dir, ENCODER_DIR))
  untrained = hyperrep.init(
    jax.random.key(0), model
  )  # zero output heads: decodes to all-zero weights
  source = load_states(tiny_zoo, [3])
  source = source.rows((source.table["activation"] == "tanh").to_numpy())
  # No held-out keys: every selected state is checked (and the table says so).
  table = sample.check_reconstruction(
    _config(), (model, untrained, spec), zoo.Zoo(tiny_zoo), source, [], str(tmp_path)
  )
  assert not table["held_out"].any() and len(table) == len(source.table)
  good = table["acc_original"] > 0.3
  assert good.any() and (table["acc_decoded"] < 0.2).all()
  with pytest.warns(UserWarning, match="keeps only"):
    kept = sample.report_reconstruction(table[good], str(tmp_path / "reconstruction.csv"))
  assert kept < sample.MIN_RETENTION
  assert os.path.exists(tmp_path / "reconstruction.csv")


def test_finetune_setting_defaults_to_the_zoo_models_own(tiny_zoo):
  source = load_states(tiny_zoo, [3])
  one = source.rows(
    (
      (source.table["optimizer"] == "adam")
      & (source.table["learning_rate"] == 1e-3)
      & (source.table["activation"] == "tanh")
    ).to_numpy()
  )
  c = sample_config.get_config()
  setting = sample.finetune_setting(c, one)
  assert setting == {k: one.table[k].iloc[0] for k in setting}
  tanh = source.rows((source.table["activation"] == "tanh").to_numpy())
  with pytest.raises(ValueError, match="config.finetune.optimizer is None.*'adam', 'sgd'"):
    sample.finetune_setting(c, tanh)


def test_samplers_are_fitted_on_the_autoencoders_training_models(sampled, encoder_dir, tiny_zoo):
  workdir, _ = sampled
  stored = np.load(os.path.join(workdir, sample.SAMPLES_FILE))
  model, params, spec, info = hyperrep.load(os.path.join(encoder_dir, ENCODER_DIR))
  source = load_states(tiny_zoo, [zoo.Zoo(tiny_zoo).epochs[-1]])
  source = source.rows((source.table["activation"] == "tanh").to_numpy())
  keys = source.keys().to_numpy(str)
  training = ~np.isin(keys, info["held_out_models"])
  assert 2 <= training.sum() < len(keys)  # the fixture's selection holds held-out models too
  np.testing.assert_array_equal(stored["states"], keys[training])
  z = np.asarray(hyperrep.make_embed(model, spec)(params, source.flat[training]))
  np.testing.assert_allclose(stored["embeddings"], z, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(stored["scores"], source.table["test_acc"].to_numpy()[training])
  every = sample.fitted_mask(_config(fit_on="all"), source, info["held_out_models"])
  assert every.all()


def _best_and_fitted(workdir):
  """(the sampled zoo's models table, its B_F rows, whether each B_F source model is a state the
  samplers were fitted on)."""
  models = zoo.Zoo(workdir).models
  fitted = set(np.load(os.path.join(workdir, sample.SAMPLES_FILE))["states"])
  zoo_name = next(iter(fitted)).split("/")[0]
  best = models[models["method"] == "B_F"]
  in_fit = best["source_model"].map(lambda m: f"{zoo_name}/{int(m)}" in fitted).to_numpy()
  return models, best, in_fit


def test_novelty_marks_the_copies_of_fitted_states(sampled):
  """Every starting model's weights.novelty is in the models table and its median in the summary:
  a B_F source model the samplers were fitted on is a copy (0); a random init is not."""
  workdir, summary = sampled
  models, best, in_fit = _best_and_fitted(workdir)
  assert in_fit.any()
  assert (best["novelty"].to_numpy()[in_fit] < 1e-3).all()
  assert (best["novelty"].to_numpy()[~in_fit] > 1e-2).all()
  assert models.loc[models["method"] == "B_T", "novelty"].median() > 0.5
  start = summary[summary["epoch"] == 0].set_index("method")["novelty"]
  assert start["B_T"] == pytest.approx(models.loc[models["method"] == "B_T", "novelty"].median())
  assert np.isnan(start["zoo"]) and summary.loc[summary["epoch"] > 0, "novelty"].isna().all()
  # The memorisation baseline: perturbed copies of fitted states, further from them as the noise grows.
  scales = sorted(sample_config.get_config().noise_scales)
  noisy = [start[f"B_N{v:g}"] for v in scales]
  assert all(a < b for a, b in zip(noisy, noisy[1:])), noisy


def test_noisy_copies_move_each_layer_by_the_scale_of_its_rms():
  params = {"a": np.full((2, 50, 40), 3.0, np.float32), "b": np.full((2, 4000), 0.01, np.float32)}
  for scale in (0.1, 1.0):
    noisy = sample.noisy_copies(jax.random.key(0), params, scale)
    for name, leaf in params.items():
      moved = np.sqrt(np.mean((noisy[name] - leaf) ** 2))
      assert moved == pytest.approx(scale * abs(leaf.flat[0]), rel=0.05)
  a, b = (sample.noisy_copies(jax.random.key(k), params, 0.1)["a"] for k in (0, 1))
  assert not np.allclose(a, b)  # the key draws the noise


@pytest.mark.slow
def test_model_scaled_autoencoder_samples_end_to_end(tiny_zoo, tmp_path):
  """configs/hyperrep_generative_hyp.py (per-model scaling), shrunk: encode, then sample; the
  embeddings carry each model's per-layer log-RMS, and the decoded draws are finite networks."""
  from configs import hyperrep_generative_hyp

  c = hyperrep_generative_hyp.get_config()
  c.epochs, c.properties, c.num_seeds, c.predictors, c.progress_bar = (
    (2, 3),
    ("test_acc",),
    1,
    ("ridge",),
    False,
  )
  c.hyperrep.model.update(dict(latent_dim=32, d_model=32, num_heads=2))
  c.hyperrep.update(dict(num_steps=40, warmup_steps=5, batch_size=16))
  encode.encode_and_evaluate(c, [tiny_zoo], str(tmp_path / "enc"))
  model, params, spec, _ = hyperrep.load(str(tmp_path / "enc" / ENCODER_DIR))
  assert model.model_scaling and model.embedding_dim == 32 + len(spec.layers)
  source = load_states(tiny_zoo, [3])
  z = np.asarray(hyperrep.make_embed(model, spec)(params, source.flat))
  np.testing.assert_allclose(
    z[:, 32:], np.log(weights.layer_rms(np.asarray(source.flat), spec)), atol=1e-4
  )
  sample.sample_and_evaluate(
    _config(samplers=("kde30_reference",), num_seeds=1),
    str(tmp_path / "enc"),
    str(tmp_path / "samples"),
  )
  samples = zoo.Zoo(str(tmp_path / "samples"))
  drawn = samples.models[samples.models["method"] == "kde30_reference"]["model_id"]
  assert len(drawn) == 3 and all(
    np.isfinite(x).all() for x in jax.tree.leaves(samples.params(drawn, epoch=0))
  )
  assert os.path.exists(tmp_path / "samples" / sample.RECONSTRUCTION_FILE)


def test_behaviour_iou_is_one_for_a_copy_and_lower_for_an_unrelated_model():
  rng = np.random.default_rng(0)
  reference = rng.uniform(size=(3, 400)) < 0.2  # three fitted models' error sets
  copy = reference[1:2]
  unrelated = rng.uniform(size=(1, 400)) < 0.2
  iou = sample.behaviour_iou(np.concatenate([copy, unrelated]), reference)
  assert iou[0] == pytest.approx(1.0)
  assert 0.0 < iou[1] < 0.3  # independent 20% error sets: IoU about 0.04 / 0.36
  assert sample.behaviour_iou(np.zeros((1, 5), bool), np.zeros((2, 5), bool))[0] == 1.0


def test_behaviour_iou_of_the_sampled_zoo(sampled):
  """Each starting model's behavioural IoU is in the models table, its median in the summary; a
  B_F model the samplers were fitted on makes the same mistakes as its fitted state (IoU 1)."""
  workdir, summary = sampled
  models, best, in_fit = _best_and_fitted(workdir)
  np.testing.assert_allclose(best["behaviour_iou"].to_numpy()[in_fit], 1.0)
  assert models["behaviour_iou"].between(0.0, 1.0).all()
  start = summary[summary["epoch"] == 0].set_index("method")["behaviour_iou"]
  assert start["B_T"] == pytest.approx(
    models.loc[models["method"] == "B_T", "behaviour_iou"].median()
  )
