"""zoo_jax.encoders.methods.hyperrep: losses against numpy, augmentations, and decoded models that work."""

import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo_jax.engine import grid, population
from zoo_jax import weights
from zoo_jax import zoo as zoo_lib
from zoo_jax.encoders.methods import hyperrep

# A tiny autoencoder: the published architecture (pre-LN blocks, compression token) at a
# size that trains in about a minute on 2 CPU cores. d_model 64 keeps the shared output
# projection's rank above what the tiny zoo's tokens need (rank 32 alone leaves ~0.09
# normalised error, rank 64 ~0.002).
TINY = dict(d_model=64, num_heads=4, num_blocks=2, latent_dim=128, mlp_dim=128, projection_dim=32)
STEPS, BATCH, LR = 200, 32, 3e-3


def numpy_nt_xent(a, b, t):
  z = np.concatenate([a, b]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n = len(a)
  losses = []
  for i in range(2 * n):
    j = (i + n) % (2 * n)
    sims = np.array([z[i] @ z[k] / t for k in range(2 * n) if k != i])
    losses.append(-(z[i] @ z[j] / t) + np.log(np.exp(sims).sum()))
  return np.mean(losses)


def numpy_reconstruction(recon, target, mask, layer, var):
  per_layer = []
  for l in range(len(var)):
    sel = (layer[..., None] == l) & mask
    if sel.any():
      per_layer.append(np.mean((recon[sel] - target[sel]) ** 2) / var[l])
  return np.mean(per_layer)


def test_nt_xent_matches_numpy():
  rng = np.random.default_rng(0)
  a, b = rng.standard_normal((2, 6, 5)).astype(np.float32)
  for t in (0.1, 0.5):
    np.testing.assert_allclose(hyperrep.nt_xent(a, b, t), numpy_nt_xent(a, b, t), rtol=1e-5)
  # Identical, well-separated pairs give a lower loss than unrelated ones.
  assert hyperrep.nt_xent(a, a, 0.1) < hyperrep.nt_xent(a, b, 0.1)


def test_reconstruction_loss_matches_numpy_and_is_layer_scale_invariant():
  rng = np.random.default_rng(1)
  B, T, d = 3, 7, 5
  recon, target = rng.standard_normal((2, B, T, d)).astype(np.float32)
  layer = np.broadcast_to(np.array([0, 0, 1, 1, 1, 2, 2], np.int32), (B, T))
  mask = rng.random((B, T, d)) < 0.7
  var = np.array([0.5, 2.0, 0.1], np.float32)
  loss = hyperrep.reconstruction_loss(recon, target, mask, layer, var)
  np.testing.assert_allclose(loss, numpy_reconstruction(recon, target, mask, layer, var), rtol=1e-5)
  # Scaling layer 1's weights by c and its variance by c^2 leaves the loss unchanged.
  c = 7.0
  scale = np.where(layer == 1, c, 1.0)[..., None].astype(np.float32)
  scaled = hyperrep.reconstruction_loss(
    recon * scale, target * scale, mask, layer, var * np.array([1, c**2, 1], np.float32)
  )
  np.testing.assert_allclose(scaled, loss, rtol=1e-5)
  # Padding does not count.
  noisy = np.where(mask, recon, 1e6)
  np.testing.assert_allclose(hyperrep.reconstruction_loss(noisy, target, mask, layer, var), loss)


@pytest.fixture(scope="module")
def trained(tiny_zoo):
  """The tiny AE trained on every state (16 models x epochs 0..3) of the tiny zoo."""
  zoo = zoo_lib.Zoo(tiny_zoo)
  spec = weights.make_spec(zoo.params(None, 0))
  # weights.flatten, not Zoo.flat: the hyperrep functions take vectors in spec order.
  flat = np.concatenate(
    [np.asarray(weights.flatten(zoo.params(None, e), spec)[0]) for e in zoo.epochs]
  )
  variance = weights.layer_variances(weights.unflatten(jnp.asarray(flat), spec), spec)
  model = hyperrep.make_model(spec, **TINY)
  params = hyperrep.init(jax.random.key(0), model)
  tx = optax.adam(optax.cosine_decay_schedule(LR, STEPS, alpha=0.03))
  # No augmentation and gamma 0.1 (the published 0.5 halves the reconstruction's weight): a
  # 200-step run must reconstruct well enough for the decoded weights to work. Learning the
  # permutation-augmented task takes far longer (300 steps with it left the normalised error
  # at ~1, decoded models at chance).
  step = hyperrep.make_train_step(
    model, tx, spec=spec, layer_variance=variance, gamma=0.1, noise=0.0, erase_p=0.0, permute=False
  )
  opt_state = tx.init(params)
  rng = np.random.default_rng(0)
  history, start = [], time.time()
  initial = (params, opt_state)
  for i in range(STEPS):
    if i % (len(flat) // BATCH) == 0:
      order = rng.permutation(len(flat))
    batch = flat[order[(i % (len(flat) // BATCH)) * BATCH :][:BATCH]]
    params, opt_state, metrics = step(params, opt_state, jnp.asarray(batch), jax.random.key(i))
    history.append(jax.tree.map(float, metrics))
  return dict(
    zoo=zoo,
    spec=spec,
    flat=flat,
    model=model,
    params=params,
    step=step,
    initial=initial,
    history=history,
    seconds=time.time() - start,
  )


def test_step_is_deterministic_with_augmentations(trained):
  """With every augmentation on (the published setting): same key, same step; new key, new step."""
  spec, model = trained["spec"], trained["model"]
  params, _ = trained["initial"]
  tx = hyperrep.make_optimizer()
  variance = jnp.ones(len(spec.layers))
  step = hyperrep.make_train_step(model, tx, spec=spec, layer_variance=variance, noise=0.05)
  batch = jnp.asarray(trained["flat"][:4])
  outs = [step(params, tx.init(params), batch, jax.random.key(7)) for _ in range(2)]
  chex.assert_trees_all_equal(outs[0], outs[1])
  chex.assert_tree_all_finite(outs[0])
  assert set(outs[0][2]) == {"loss", "reconstruction", "contrastive"}
  other = step(params, tx.init(params), batch, jax.random.key(8))
  assert float(other[2]["loss"]) != float(outs[0][2]["loss"])


def test_augment_permutes_and_keeps_padding(trained):
  spec, flat = trained["spec"], jnp.asarray(trained["flat"][-3:])  # trained: distinct biases
  view, target = hyperrep.augment(jax.random.key(0), flat, spec, noise=0.1, erase_p=1.0)
  clean, _ = weights.tokenize(weights.unflatten(flat, spec), spec)
  chex.assert_trees_all_equal_shapes(view, target, clean)
  assert not np.any(np.asarray(view.values)[~np.asarray(view.mask)])  # padding stays 0
  # The target is a permutation of each layer's units: the same multiset of biases, reordered.
  for l, layer in enumerate(spec.layers):
    rows = np.asarray(clean.layer[0]) == l
    bias = lambda tokens: np.sort(np.asarray(tokens.values)[:, rows, layer.fan_in], axis=1)
    np.testing.assert_array_equal(bias(target), bias(clean))
  assert not np.array_equal(np.asarray(target.values), np.asarray(clean.values))
  # The view differs from the target only on real entries (noise) or where erased (0).
  diff = np.asarray(view.values) != np.asarray(target.values)
  assert diff.any() and not diff[~np.asarray(view.mask)].any()


def test_loss_decreases(trained):
  losses = np.array([m["loss"] for m in trained["history"]])
  recon = np.array([m["reconstruction"] for m in trained["history"]])
  assert np.all(np.isfinite(losses))
  assert losses[-20:].mean() < 0.5 * losses[:5].mean()
  assert recon[-20:].mean() < 0.2 * recon[:5].mean()


def test_decoded_models_work(trained, mnist5k):
  zoo, spec, model, params = trained["zoo"], trained["spec"], trained["model"], trained["params"]
  last = np.asarray(weights.flatten(zoo.params(None, -1), spec)[0])
  n = len(last)
  z = hyperrep.make_embed(model, spec, batch_size=6)(params, last)  # 16 = 6 + 6 + 4 (padded)
  chex.assert_shape(z, (n, model.latent_dim))
  chex.assert_tree_all_finite(z)
  decoded = hyperrep.make_decode(model, spec)(params, z)
  original = zoo.params(None, -1)
  chex.assert_trees_all_equal_shapes(decoded, original)
  chex.assert_tree_all_finite(decoded)

  test = mnist5k["test"]
  images, labels = jnp.asarray(test.images), jnp.asarray(test.labels)
  acc = {"original": np.zeros(n), "decoded": np.zeros(n)}
  for cohort, rows in grid.cohorts(zoo.models):
    evaluate = population.make_evaluate(cohort, batch_size=500, mean=test.mean, std=test.std)
    ids = rows["model_id"].to_numpy()
    for name, tree in (("original", original), ("decoded", decoded)):
      acc[name][ids] = evaluate(jax.tree.map(lambda x: x[ids], tree), images, labels).accuracy
  print(
    f"hyperrep: {STEPS} steps in {trained['seconds']:.1f} s; accuracy original "
    f"{np.round(acc['original'], 3)}, decoded {np.round(acc['decoded'], 3)}"
  )
  good = acc["original"] >= 0.6  # measured: 5 of the 16 models, 0.64-0.81 (chance: 0.1)
  assert good.sum() >= 3, acc["original"]
  # Measured in a development run of this exact setup: the good models decode to 0.26-0.72
  # (mean 0.54), 0.09-0.39 below their originals (mean 0.18); the best decoded model loses
  # <0.1. Thresholds leave about 0.1 of margin.
  decoded, gap = acc["decoded"][good], acc["original"][good] - acc["decoded"][good]
  assert decoded.max() >= 0.6, acc
  assert decoded.mean() >= 0.4, acc
  assert (decoded >= 0.4).sum() >= 3, acc
  assert gap.min() <= 0.2 and gap.mean() <= 0.3, acc


def test_global_mean_reduction_matches_numpy():
  rng = np.random.default_rng(2)
  recon, target = rng.standard_normal((2, 2, 7, 5)).astype(np.float32)
  layer = np.broadcast_to(np.array([0, 0, 1, 1, 1, 2, 2], np.int32), (2, 7))
  mask = rng.random((2, 7, 5)) < 0.7
  var = np.array([0.5, 2.0, 0.1], np.float32)
  expected = np.mean(((recon - target) ** 2 / var[layer][..., None])[mask])
  got = hyperrep.reconstruction_loss(recon, target, mask, layer, var, reduction="global_mean")
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  with pytest.raises(ValueError, match="reduction 'mean' is unknown"):
    hyperrep.reconstruction_loss(recon, target, mask, layer, var, reduction="mean")


def test_per_layer_projections_read_and_write_only_their_layer(tmp_path):
  """Per-layer embedders/heads: one Dense per layer on its real entries; padding stays 0; save/load."""
  from param_trees import random_params

  params = random_params("cnn_s", batch=(3,))
  flat, spec = weights.flatten(params)
  model = hyperrep.make_model(spec, per_layer=True, **TINY)
  assert model.layer_units == tuple(l.units for l in spec.layers)
  variables = hyperrep.init(jax.random.key(0), model)
  embedders = [k for k in variables["params"] if k.startswith("token_embed")]
  heads = [k for k in variables["params"] if k.startswith("to_tokens")]
  assert len(embedders) == len(heads) == len(spec.layers)
  for l, layer in enumerate(spec.layers):  # head l outputs exactly layer l's token width
    width = layer.fan_in + 1
    assert variables["params"][f"to_tokens_{l}"]["kernel"].shape == (TINY["d_model"], width)
    assert variables["params"][f"token_embed_{l}"]["kernel"].shape == (width, TINY["d_model"])
  # Train a few steps so the heads are non-zero, then check the decoded padding is exactly 0.
  tx = optax.adam(1e-2)
  step = hyperrep.make_train_step(
    model,
    tx,
    spec=spec,
    layer_variance=jnp.ones(len(spec.layers)),
    permute=False,
    noise=0.0,
    erase_p=0.0,
  )
  opt_state = tx.init(variables)
  for i in range(3):
    variables, opt_state, _ = step(variables, opt_state, flat, jax.random.key(i))
  tokens, _ = weights.tokenize(params, spec)
  z = model.apply(
    variables, tokens.values, tokens.layer, tokens.position, method=hyperrep.HyperRep.encode
  )
  values = model.apply(variables, z, tokens.layer, tokens.position, method=hyperrep.HyperRep.decode)
  assert np.abs(np.asarray(values)[~np.asarray(tokens.mask)]).max() == 0.0
  assert np.abs(np.asarray(values)[np.asarray(tokens.mask)]).max() > 0.0
  hyperrep.save(str(tmp_path / "ae"), model, variables, spec)
  loaded, loaded_params, loaded_spec, _ = hyperrep.load(str(tmp_path / "ae"))
  assert loaded == model and loaded_spec == spec
  embed = lambda m, p: np.asarray(hyperrep.make_embed(m, spec)(p, flat))
  np.testing.assert_array_equal(embed(loaded, loaded_params), embed(model, variables))


def test_flatten_bottleneck_reads_every_token_and_round_trips(tmp_path):
  """bottleneck="flatten": z is one linear map of every token's output (no compression token)."""
  from param_trees import random_params

  params = random_params("cnn_s", batch=(2,))
  flat, spec = weights.flatten(params)
  model = hyperrep.make_model(
    spec, per_layer=True, bottleneck="flatten", **dict(TINY, latent_dim=40)
  )
  variables = hyperrep.init(jax.random.key(0), model)
  assert "compression_token" not in variables["params"]
  assert variables["params"]["to_latent"]["kernel"].shape == (
    model.num_tokens * TINY["d_model"],
    40,
  )
  tokens, _ = weights.tokenize(params, spec)
  encode = lambda values: np.asarray(
    model.apply(variables, values, tokens.layer, tokens.position, method=hyperrep.HyperRep.encode)
  )
  z = encode(tokens.values)
  assert z.shape == (2, 40) and np.all(np.isfinite(z))
  # Changing one entry of the last token of model 0 changes model 0's z only.
  moved = encode(tokens.values.at[0, -1, 0].add(1.0))
  assert not np.allclose(moved[0], z[0]) and np.array_equal(moved[1], z[1])
  hyperrep.save(str(tmp_path / "ae"), model, variables, spec)
  loaded, loaded_params, _, _ = hyperrep.load(str(tmp_path / "ae"))
  assert loaded == model
  np.testing.assert_allclose(
    np.asarray(hyperrep.make_embed(loaded, spec)(loaded_params, flat)), z, rtol=1e-5, atol=1e-5
  )
  with pytest.raises(ValueError, match="bottleneck 'pool' is unknown"):
    hyperrep.init(jax.random.key(0), hyperrep.make_model(spec, bottleneck="pool", **TINY))


def test_view_target_keeps_the_views_noise_but_not_its_erasing():
  from param_trees import random_params

  params = random_params("cnn_s", batch=(3,))
  flat, spec = weights.flatten(params)
  key = jax.random.key(3)
  view, target = hyperrep.augment(
    key, flat, spec, noise=0.1, erase_p=1.0, permute=False, target="view"
  )
  _, clean_target = hyperrep.augment(key, flat, spec, noise=0.1, erase_p=1.0, permute=False)
  clean, _ = weights.tokenize(params, spec)
  np.testing.assert_array_equal(np.asarray(clean_target.values), np.asarray(clean.values))
  real = np.asarray(clean.mask)
  noise = (np.asarray(target.values) - np.asarray(clean.values))[real]
  assert 0.08 < noise.std() < 0.12  # the target carries the view's N(0, 0.1^2) noise
  erased = np.asarray(view.values) != np.asarray(target.values)
  assert erased.any() and np.all(
    np.asarray(view.values)[erased] == 0
  )  # they differ only where erased
  with pytest.raises(ValueError, match="target 'noisy' is unknown"):
    hyperrep.augment(key, flat, spec, target="noisy")


def test_layer_scale_feeds_every_layer_at_unit_scale_and_decodes_back(tmp_path):
  """layer_scale s: the model sees tokens / s[layer] and its decoded tokens come out times s[layer],
  i.e. it is the unscaled model on a zoo divided layer by layer by s; saved and loaded with the model."""
  from param_trees import random_params

  params = random_params("cnn_s", batch=(3,))
  flat, spec = weights.flatten(params)
  variance = np.asarray(weights.layer_variances(params, spec))
  scaled = hyperrep.make_model(spec, per_layer=True, layer_variance=variance, **TINY)
  plain = hyperrep.make_model(spec, per_layer=True, **TINY)
  scale = np.sqrt(variance)
  assert scaled.layer_scale == pytest.approx(tuple(scale))
  variables = hyperrep.init(jax.random.key(0), scaled)
  # Non-zero output heads, so the decoded scaling is visible.
  variables = jax.tree.map(
    lambda x: x + 0.01 * jax.random.normal(jax.random.key(1), x.shape), variables
  )
  tokens, _ = weights.tokenize(params, spec)
  per_token = np.asarray(weights.per_token(jnp.asarray(scale, jnp.float32), tokens.layer))
  apply = lambda m, values, method: np.asarray(
    m.apply(variables, values, tokens.layer, tokens.position, method=method)
  )
  z = apply(scaled, tokens.values, hyperrep.HyperRep.encode)
  np.testing.assert_allclose(
    z, apply(plain, tokens.values / per_token, hyperrep.HyperRep.encode), rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(
    apply(scaled, z, hyperrep.HyperRep.decode),
    apply(plain, z, hyperrep.HyperRep.decode) * per_token,
    rtol=1e-5,
    atol=1e-6,
  )
  assert not np.allclose(z, apply(plain, tokens.values, hyperrep.HyperRep.encode))
  hyperrep.save(str(tmp_path / "ae"), scaled, variables, spec)
  assert hyperrep.load(str(tmp_path / "ae"))[0] == scaled
  with pytest.raises(ValueError, match="layer_scale has 2 entries"):
    hyperrep.init(jax.random.key(0), hyperrep.make_model(spec, layer_scale=(1.0, 2.0), **TINY))


def test_split_tokens_train_embed_and_decode_whole_models():
  """token_dim narrower than a unit: per-layer embedders and heads over each layer's pieces; a
  training step, embedding and decoding all use the model's own width; decoding gives the spec."""
  from param_trees import random_params

  params = random_params("cnn_s", batch=(4,))
  flat, spec = weights.flatten(params)
  model = hyperrep.make_model(spec, token_dim=52, per_layer=True, **TINY)
  assert model.token_dim == 52 and model.num_tokens == 66
  assert model.layer_units == (8, 24, 4, 20, 10) and model.layer_widths == (26, 52, 25, 37, 21)
  assert model.max_units == 24
  variables = hyperrep.init(jax.random.key(0), model)
  tx = optax.adam(1e-2)
  step = hyperrep.make_train_step(
    model,
    tx,
    spec=spec,
    layer_variance=jnp.ones(len(spec.layers)),
    permute=False,
    noise=0.0,
    erase_p=0.0,
  )
  opt_state = tx.init(variables)
  losses = []
  for i in range(10):
    variables, opt_state, metrics = step(variables, opt_state, flat, jax.random.key(i))
    losses.append(float(metrics["reconstruction"]))
  assert np.isfinite(losses).all() and losses[-1] < losses[0]
  z = hyperrep.make_embed(model, spec)(variables, flat)
  assert z.shape == (4, TINY["latent_dim"])
  decoded = hyperrep.make_decode(model, spec)(variables, z)
  chex.assert_trees_all_equal_shapes(decoded, params)


def test_model_scaling_feeds_each_model_at_its_own_scale_and_carries_it_in_the_latent(tmp_path):
  """model_scaling: the embedding is [latent, log-RMS per layer]; scaling one model's layer by c
  leaves its latent part unchanged, adds log c to that layer's entry and scales that layer's
  decoding by c; the loss weighs each model's layers by their own variance; saved and loaded."""
  from param_trees import random_params

  params = random_params("cnn_s", batch=(3,))
  flat, spec = weights.flatten(params)
  model = hyperrep.make_model(
    spec, token_dim=52, per_layer=True, model_scaling=True, bottleneck="flatten", **TINY
  )
  num_layers = len(spec.layers)
  assert model.embedding_dim == TINY["latent_dim"] + num_layers
  assert model.layer_sizes == tuple(l.units * (l.fan_in + 1) for l in spec.layers)
  variables = hyperrep.init(jax.random.key(0), model)
  variables = jax.tree.map(
    lambda x: x + 0.01 * jax.random.normal(jax.random.key(1), x.shape), variables
  )
  embed, decode = hyperrep.make_embed(model, spec), hyperrep.make_decode(model, spec)
  z = np.asarray(embed(variables, flat))
  assert z.shape == (3, model.embedding_dim)
  np.testing.assert_allclose(
    z[:, -num_layers:], np.log(weights.layer_rms(np.asarray(flat), spec)), atol=1e-5
  )
  # Model 1's conv_1 times 7: the same latent, log 7 more in that layer's scale, 7x its decoding.
  scaled = {"params": dict(params["params"])}
  scaled["params"]["conv_1"] = jax.tree.map(
    lambda x: x.at[1].multiply(7.0), params["params"]["conv_1"]
  )
  z_scaled = np.asarray(embed(variables, weights.flatten(scaled, spec)[0]))
  np.testing.assert_allclose(z_scaled[:, :-num_layers], z[:, :-num_layers], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(
    z_scaled[:, -num_layers:] - z[:, -num_layers:],
    np.log(7.0) * (np.arange(3)[:, None] == 1) * (np.arange(num_layers) == 1),
    atol=1e-5,
  )
  decoded, decoded_scaled = (
    decode(variables, jnp.asarray(z)),
    decode(variables, jnp.asarray(z_scaled)),
  )
  d, d_scaled = decoded["params"], decoded_scaled["params"]
  np.testing.assert_allclose(
    d_scaled["conv_1"]["kernel"][1], 7.0 * d["conv_1"]["kernel"][1], rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(
    d_scaled["conv_0"]["kernel"], d["conv_0"]["kernel"], rtol=1e-4, atol=1e-6
  )
  # The loss: a model's reconstruction error counts relative to its own layer variance.
  tokens, _ = weights.tokenize(params, spec, dim=52)
  per_model = (
    np.asarray(model.apply(variables, tokens.values, method=hyperrep.HyperRep.model_scale)) ** 2
  )
  recon = tokens.values * 1.1
  loss = hyperrep.reconstruction_loss(
    recon, tokens.values, tokens.mask, tokens.layer, jnp.asarray(per_model)
  )
  assert float(loss) == pytest.approx(
    0.01, rel=1e-3
  )  # (0.1 w)^2 / mean(w^2) in every layer of every model
  tx = optax.adam(1e-3)
  step = hyperrep.make_train_step(model, tx, spec=spec, layer_variance=jnp.ones(num_layers))
  _, _, metrics = step(variables, tx.init(variables), flat, jax.random.key(2))
  assert np.isfinite(float(metrics["loss"]))
  hyperrep.save(str(tmp_path / "ae"), model, variables, spec)
  assert hyperrep.load(str(tmp_path / "ae"))[0] == model
  with pytest.raises(ValueError, match="model_scaling needs the per-layer fields"):
    hyperrep.init(jax.random.key(0), hyperrep.make_model(spec, model_scaling=True, **TINY))
