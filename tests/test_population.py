import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo_jax import population as pop

N_TRAIN, BATCH = 100, 10
_EPOCH_FNS = {}  # one jitted epoch function per cohort, shared by the tests (compiles are the cost)


@pytest.fixture(scope="module")
def train_set(mnist5k):
  d = mnist5k["train"]
  return d, jnp.asarray(d.images[:N_TRAIN]), jnp.asarray(d.labels[:N_TRAIN])


def _train(cohort, rows, train_set, epochs=2):
  """Trains the models described by `rows` (dicts) as one cohort; returns the final state."""
  d, x, y = train_set
  col = lambda k: np.array([r[k] for r in rows])
  state = pop.create_population(cohort, col("seed"), col("init"), col("lr"), col("wd"), col("dropout"),
                                d.image_shape)
  if cohort not in _EPOCH_FNS:
    _EPOCH_FNS[cohort] = pop.make_train_epoch(cohort, batch_size=BATCH, num_train=N_TRAIN, mean=d.mean,
                                              std=d.std)
  epoch_fn = _EPOCH_FNS[cohort]
  metrics = []
  for _ in range(epochs):
    state, m = epoch_fn(state, x, y)
    metrics.append(m)
  return state, metrics, epoch_fn


def _model(state, i):
  return jax.tree.map(lambda a: np.asarray(a[i]), state.params)


MIXED = [dict(seed=s, init=init, lr=lr, wd=wd, dropout=do)
         for s, (init, lr, wd, do) in enumerate(
             [(i, lr, wd, do) for i in ("uniform", "kaiming_uniform", "normal", "xavier_normal")
              for lr, wd, do in ((1e-3, 0.0, 0.0), (3e-4, 1e-3, 0.5), (1e-2, 1e-4, 0.2), (1e-3, 0.0, 0.1))], start=1)]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_model_trains_to_same_weights_alone_and_in_a_cohort(optimizer, train_set):
  cohort = pop.Cohort("cnn_s", "tanh", optimizer, use_dropout=True)
  assert len(MIXED) == 16
  together, _, _ = _train(cohort, MIXED, train_set)
  for i in (6, 13):
    alone, _, _ = _train(cohort, [MIXED[i]], train_set)
    # Same seed, same program per model; only the batching of XLA's kernels differs, which
    # can reorder float sums (~1e-7 relative per op). After 40 steps that stays far below
    # the differences between models (order 1e-1); we allow 1e-4.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 _model(together, i), _model(alone, 0))
    # ...and it is not trivially equal to its neighbour.
    assert not np.allclose(_model(together, i)["conv_0"]["kernel"], _model(together, i + 1)["conv_0"]["kernel"])


def test_zero_dropout_rate_in_a_dropout_cohort_equals_no_dropout(train_set):
  row = [dict(seed=3, init="kaiming_uniform", lr=1e-3, wd=0.0, dropout=0.0)]
  a, _, _ = _train(pop.Cohort("cnn_s", "relu", "adam", True), row, train_set)
  b, _, _ = _train(pop.Cohort("cnn_s", "relu", "adam", False), row, train_set)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), _model(a, 0), _model(b, 0))


def test_same_seed_same_weights_different_seed_different_weights(train_set):
  rows = [dict(seed=s, init="kaiming_uniform", lr=1e-3, wd=0.0, dropout=0.0) for s in (5, 5, 6)]
  state, _, _ = _train(pop.Cohort("cnn_s", "tanh", "adam", False), rows, train_set, epochs=1)
  jax.tree.map(np.testing.assert_array_equal, _model(state, 0), _model(state, 1))
  assert not np.allclose(_model(state, 0)["dense_1"]["kernel"], _model(state, 2)["dense_1"]["kernel"])


def test_diverging_model_is_flagged_frozen_and_isolated(train_set):
  cohort = pop.Cohort("cnn_s", "relu", "sgd", False)
  base = [dict(seed=s, init="kaiming_uniform", lr=1e-2, wd=0.0, dropout=0.0) for s in (1, 2, 3, 4)]
  bad = [dict(r) for r in base]
  bad[2]["lr"] = 1e35  # weights leave float32's range within a few steps
  ref, ref_metrics, _ = _train(cohort, base, train_set)
  out, out_metrics, _ = _train(cohort, bad, train_set)
  np.testing.assert_array_equal(np.asarray(out.diverged), [False, False, True, False])
  for i in (0, 1, 3):  # the others are bit-identical to a run without the bad model
    jax.tree.map(np.testing.assert_array_equal, _model(out, i), _model(ref, i))
    assert out_metrics[-1].loss[i] == ref_metrics[-1].loss[i]
  assert np.isnan(out_metrics[-1].loss[2]) and np.isnan(out_metrics[-1].accuracy[2])
  jax.tree.map(lambda a: np.testing.assert_array_equal(np.isfinite(a), True), _model(out, 2))


def test_training_reduces_loss_and_compiles_once(train_set):
  rows = [dict(seed=s, init="kaiming_uniform", lr=1e-3, wd=0.0, dropout=0.0) for s in range(4)]
  epoch_fn = pop.make_train_epoch(pop.Cohort("cnn_s", "tanh", "adam", False), batch_size=BATCH,
                                  num_train=N_TRAIN, mean=train_set[0].mean, std=train_set[0].std)
  _EPOCH_FNS[pop.Cohort("cnn_s", "tanh", "adam", False)] = epoch_fn
  state, metrics, epoch_fn = _train(pop.Cohort("cnn_s", "tanh", "adam", False), rows, train_set, epochs=3)
  assert np.all(metrics[-1].loss < metrics[0].loss)
  assert epoch_fn._cache_size() == 1  # no retracing across epochs
  np.testing.assert_array_equal(np.asarray(state.epoch), 3)


def test_optimizer_is_l2_regularised_adam_like_pytorch():
  # One Adam step with weight decay as PyTorch's Adam(weight_decay=wd) computes it.
  lr, wd, b1, b2, eps = 1e-2, 0.1, 0.9, 0.999, 1e-8
  w, g = np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.2, -0.3])
  tx = pop.make_optimizer("adam")(learning_rate=lr, weight_decay=wd)
  updates, _ = tx.update(jnp.asarray(g), tx.init(jnp.asarray(w)), jnp.asarray(w))
  g2 = g + wd * w
  m, v = (1 - b1) * g2, (1 - b2) * g2 ** 2
  expected = -lr * (m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + eps)
  np.testing.assert_allclose(updates, expected, rtol=1e-5)
  # SGD with momentum 0.9: two steps, torch's buf = 0.9 * buf + (g + wd * w).
  tx = pop.make_optimizer("sgd")(learning_rate=lr, weight_decay=wd)
  state = tx.init(jnp.asarray(w))
  u1, state = tx.update(jnp.asarray(g), state, jnp.asarray(w))
  w1 = w + np.asarray(u1)
  u2, _ = tx.update(jnp.asarray(g), state, jnp.asarray(w1))
  buf = 0.9 * (g + wd * w) + (g + wd * w1)
  np.testing.assert_allclose(u2, -lr * buf, rtol=1e-5)


def test_unknown_optimizer_is_a_clear_error():
  with pytest.raises(ValueError, match="Unknown optimizer 'rmsprop'.*allowed values"):
    pop.make_optimizer("rmsprop")


def test_evaluate_matches_a_direct_per_model_computation(mnist5k):
  d = mnist5k["test"]
  images, labels = d.images[:101], d.labels[:101]
  cohort = pop.Cohort("cnn_s", "relu", "adam", False)
  params = pop.init_params(cohort, np.array([1, 2, 3]), np.array(["kaiming_normal"] * 3), d.image_shape)
  evaluate = pop.make_evaluate(cohort, batch_size=32, mean=d.mean, std=d.std)  # 101 = 3 x 32 + 5
  got = evaluate(params, jnp.asarray(images), jnp.asarray(labels))
  model = pop.make_model(cohort)
  x = (images.astype(np.float32) / 255 - 0.1307) / 0.3081
  for i in range(3):
    logits = np.asarray(model.apply({"params": jax.tree.map(lambda a: a[i], params)}, x), np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    np.testing.assert_allclose(got.loss[i], -logp[np.arange(101), labels].mean(), rtol=1e-5)
    np.testing.assert_allclose(got.accuracy[i], (logits.argmax(1) == labels).mean(), rtol=1e-6)


def test_init_params_depends_on_seed_and_init_only():
  cohort = pop.Cohort("cnn_s", "tanh", "adam", False)
  a = pop.init_params(cohort, np.array([7, 8, 7]), np.array(["normal", "uniform", "uniform"]), (28, 28, 1))
  b = pop.init_params(cohort, np.array([7]), np.array(["uniform"]), (28, 28, 1))
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(x[2], y[0]), a, b)
  assert np.asarray(a["conv_0"]["kernel"][1]).min() >= 0  # uniform U(0, 1)
  assert np.asarray(a["conv_0"]["kernel"][0]).min() < 0  # normal N(0, 1)


def test_chunked_lax_map_equals_one_vmap(train_set):
  """models_per_vmap only changes how the cohort is batched, not what each model computes."""
  d, x, y = train_set
  cohort = pop.Cohort("cnn_s", "tanh", "adam", True)
  rows = MIXED[:5]
  col = lambda k: np.array([r[k] for r in rows])
  results = {}
  for k in (0, 1, 2):  # 2 leaves a remainder chunk of one model
    state = pop.create_population(cohort, col("seed"), col("init"), col("lr"), col("wd"), col("dropout"),
                                  d.image_shape)
    epoch_fn = pop.make_train_epoch(cohort, batch_size=BATCH, num_train=N_TRAIN, mean=d.mean, std=d.std,
                                    models_per_vmap=k)
    results[k], metrics = epoch_fn(state, x, y)
    assert metrics.loss.shape == (5,)
  for k in (1, 2):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 results[k].params, results[0].params)
  # One model at a time is the program a model trains with alone: bit-identical.
  alone, _, _ = _train(cohort, [rows[3]], train_set, epochs=1)
  jax.tree.map(np.testing.assert_array_equal, _model(results[1], 3), _model(alone, 0))
