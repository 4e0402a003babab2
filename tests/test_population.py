import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo_jax.engine import population as pop

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
  state = pop.create_population(
    cohort, col("seed"), col("init"), col("lr"), col("wd"), col("dropout"), d.image_shape
  )
  if cohort not in _EPOCH_FNS:
    _EPOCH_FNS[cohort] = pop.make_train_epoch(
      cohort, batch_size=BATCH, num_train=N_TRAIN, mean=d.mean, std=d.std
    )
  epoch_fn = _EPOCH_FNS[cohort]
  metrics = []
  for _ in range(epochs):
    state, m = epoch_fn(state, x, y)
    metrics.append(m)
  return state, metrics, epoch_fn


def _model(state, i):
  return jax.tree.map(lambda a: np.asarray(a[i]), state.params)


MIXED = [
  dict(seed=s, init=init, lr=lr, wd=wd, dropout=do)
  for s, (init, lr, wd, do) in enumerate(
    [
      (i, lr, wd, do)
      for i in ("uniform", "kaiming_uniform", "normal", "xavier_normal")
      for lr, wd, do in ((1e-3, 0.0, 0.0), (3e-4, 1e-3, 0.5), (1e-2, 1e-4, 0.2), (1e-3, 0.0, 0.1))
    ],
    start=1,
  )
]


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
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
      _model(together, i),
      _model(alone, 0),
    )
    # ...and it is not trivially equal to its neighbour.
    assert not np.allclose(
      _model(together, i)["conv_0"]["kernel"], _model(together, i + 1)["conv_0"]["kernel"]
    )


def test_zero_dropout_rate_in_a_dropout_cohort_equals_no_dropout(train_set):
  row = [dict(seed=3, init="kaiming_uniform", lr=1e-3, wd=0.0, dropout=0.0)]
  a, _, _ = _train(pop.Cohort("cnn_s", "relu", "adam", True), row, train_set)
  b, _, _ = _train(pop.Cohort("cnn_s", "relu", "adam", False), row, train_set)
  jax.tree.map(
    lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), _model(a, 0), _model(b, 0)
  )


def test_same_seed_same_weights_different_seed_different_weights(train_set):
  rows = [dict(seed=s, init="kaiming_uniform", lr=1e-3, wd=0.0, dropout=0.0) for s in (5, 5, 6)]
  state, _, _ = _train(pop.Cohort("cnn_s", "tanh", "adam", False), rows, train_set, epochs=1)
  jax.tree.map(np.testing.assert_array_equal, _model(state, 0), _model(state, 1))
  assert not np.allclose(
    _model(state, 0)["dense_1"]["kernel"], _model(state, 2)["dense_1"]["kernel"]
  )


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
  epoch_fn = pop.make_train_epoch(
    pop.Cohort("cnn_s", "tanh", "adam", False),
    batch_size=BATCH,
    num_train=N_TRAIN,
    mean=train_set[0].mean,
    std=train_set[0].std,
  )
  _EPOCH_FNS[pop.Cohort("cnn_s", "tanh", "adam", False)] = epoch_fn
  state, metrics, epoch_fn = _train(
    pop.Cohort("cnn_s", "tanh", "adam", False), rows, train_set, epochs=3
  )
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
  m, v = (1 - b1) * g2, (1 - b2) * g2**2
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


@pytest.mark.parametrize(
  "models_per_vmap,conv_impl", [(0, "xla"), (1, "patches"), (2, "patches"), (2, "taps")]
)
def test_evaluate_matches_a_direct_per_model_computation(mnist5k, models_per_vmap, conv_impl):
  """Whatever the chunking of the models (2: a chunk of 2 and a remainder of 1) and the conv form."""
  d = mnist5k["test"]
  images, labels = d.images[:101], d.labels[:101]
  cohort = pop.Cohort("cnn_s", "relu", "adam", False)
  params = pop.init_params(
    cohort, np.array([1, 2, 3]), np.array(["kaiming_normal"] * 3), d.image_shape
  )
  evaluate = pop.make_evaluate(
    cohort,
    batch_size=32,
    mean=d.mean,
    std=d.std,  # 101 = 3 x 32 + 5
    models_per_vmap=models_per_vmap,
    conv_impl=conv_impl,
  )
  got = evaluate(params, jnp.asarray(images), jnp.asarray(labels))
  model = pop.make_model(cohort)
  x = (images.astype(np.float32) / 255 - 0.1307) / 0.3081
  for i in range(3):
    logits = np.asarray(
      model.apply({"params": jax.tree.map(lambda a: a[i], params)}, x), np.float64
    )
    logp = (
      logits
      - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
      - logits.max(1, keepdims=True)
    )
    np.testing.assert_allclose(got.loss[i], -logp[np.arange(101), labels].mean(), rtol=1e-5)
    np.testing.assert_allclose(got.accuracy[i], (logits.argmax(1) == labels).mean(), rtol=1e-6)


def test_init_params_depends_on_seed_and_init_only():
  cohort = pop.Cohort("cnn_s", "tanh", "adam", False)
  a = pop.init_params(
    cohort, np.array([7, 8, 7]), np.array(["normal", "uniform", "uniform"]), (28, 28, 1)
  )
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
    state = pop.create_population(
      cohort, col("seed"), col("init"), col("lr"), col("wd"), col("dropout"), d.image_shape
    )
    epoch_fn = pop.make_train_epoch(
      cohort, batch_size=BATCH, num_train=N_TRAIN, mean=d.mean, std=d.std, models_per_vmap=k
    )
    results[k], metrics = epoch_fn(state, x, y)
    assert metrics.loss.shape == (5,)
  for k in (1, 2):
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
      results[k].params,
      results[0].params,
    )
  # One model at a time is the program a model trains with alone: bit-identical.
  alone, _, _ = _train(cohort, [rows[3]], train_set, epochs=1)
  jax.tree.map(np.testing.assert_array_equal, _model(results[1], 3), _model(alone, 0))


# --- OneCycleLR and train-time augmentation (the Model Zoos' ResNet-18 protocol) ---------------


@pytest.mark.parametrize("total_steps", [7, 40])
def test_onecycle_is_pytorchs_onecycle_lr_with_momentum_cycling(total_steps):
  import torch

  param = torch.nn.Parameter(torch.zeros(3))
  opt = torch.optim.SGD([param], lr=0.05, momentum=0.9, weight_decay=5e-4)
  sched = torch.optim.lr_scheduler.OneCycleLR(
    opt, max_lr=0.05, epochs=1, steps_per_epoch=total_steps
  )
  lrs, moms = [], []
  for _ in range(total_steps):
    lrs.append(opt.param_groups[0]["lr"])
    moms.append(opt.param_groups[0]["momentum"])
    opt.step()
    sched.step()
  factor, momentum = jax.vmap(lambda s: pop.onecycle(s, total_steps))(jnp.arange(total_steps))
  np.testing.assert_allclose(0.05 * np.asarray(factor), lrs, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(momentum), moms, rtol=1e-6)


def test_onecycle_sgd_follows_pytorchs_sgd_with_onecycle_lr_step_by_step():
  """Weights of SGD (weight decay, cycled momentum) under OneCycleLR, torch vs ours, on a quadratic."""
  import torch

  total, target = 12, np.linspace(-1, 1, 5).astype(np.float32)
  w = torch.nn.Parameter(torch.ones(5))
  opt = torch.optim.SGD([w], lr=0.3, momentum=0.9, weight_decay=1e-2)
  sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.3, epochs=3, steps_per_epoch=total // 3)
  tx = pop.make_optimizer("sgd", pop.Schedule("onecycle", total))(
    learning_rate=0.3, weight_decay=1e-2
  )
  params = jnp.ones(5)
  state = tx.init(params)
  loss = lambda p, t: jnp.sum((p - t) ** 2 * jnp.arange(1, 6))
  for _ in range(total):
    opt.zero_grad()
    torch.sum((w - torch.from_numpy(target)) ** 2 * torch.arange(1, 6)).backward()
    opt.step()
    sched.step()
    updates, state = tx.update(jax.grad(loss)(params, target), state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(np.asarray(params), w.detach().numpy(), rtol=1e-5, atol=1e-6)
  assert not np.allclose(np.asarray(params), 1.0)


def test_augment_images_crop_flip_and_rotation():
  x = jnp.asarray(np.random.default_rng(0).integers(1, 256, (16, 5, 5, 2)), jnp.uint8)
  key = jax.random.key(0)
  out = np.asarray(pop.augment_images(key, x, pop.Augment(crop_padding=2)))
  padded = np.pad(np.asarray(x, np.float32), ((0, 0), (2, 2), (2, 2), (0, 0)))
  offsets = set()
  for i in range(16):  # each image is a 5x5 window of its zero-padded self
    found = [
      (dy, dx)
      for dy in range(5)
      for dx in range(5)
      if np.array_equal(out[i], padded[i, dy : dy + 5, dx : dx + 5])
    ]
    assert found
    offsets.add(found[0])
  assert len(offsets) > 3  # offsets differ between images
  flipped = np.asarray(pop.augment_images(key, x, pop.Augment(horizontal_flip=True)))
  mirrored = [np.array_equal(f, np.asarray(a)[:, ::-1]) for f, a in zip(flipped, x)]
  kept = [np.array_equal(f, np.asarray(a)) for f, a in zip(flipped, x)]
  assert all(m or k for m, k in zip(mirrored, kept)) and 0 < sum(mirrored) < 16
  rotated = np.asarray(pop.augment_images(key, x, pop.Augment(rotation=20.0)))
  np.testing.assert_array_equal(
    rotated[:, 2, 2], np.asarray(x, np.float32)[:, 2, 2]
  )  # the centre stays
  assert set(np.unique(rotated)) <= set(np.unique(np.asarray(x, np.float32))) | {
    0.0
  }  # nearest pixel or fill 0
  assert not np.array_equal(rotated, np.asarray(x, np.float32))
  np.testing.assert_array_equal(
    pop.augment_images(key, x, pop.Augment()), np.asarray(x, np.float32)
  )


@pytest.mark.slow
def test_onecycle_and_augmentation_train_a_model_alone_as_in_a_cohort(train_set):
  d, x, y = train_set
  cohort = pop.Cohort("cnn_s", "relu", "sgd", use_dropout=False)
  schedule, augment = pop.Schedule("onecycle", N_TRAIN // BATCH), pop.Augment(2, True, 10.0)
  epoch_fn = pop.make_train_epoch(
    cohort,
    batch_size=BATCH,
    num_train=N_TRAIN,
    mean=d.mean,
    std=d.std,
    schedule=schedule,
    augment=augment,
  )

  def run(seeds):
    n = len(seeds)
    state = pop.create_population(
      cohort,
      np.array(seeds),
      np.array(["kaiming_uniform"] * n),
      np.full(n, 0.05),
      np.full(n, 1e-3),
      np.zeros(n),
      d.image_shape,
      schedule=schedule,
    )
    return epoch_fn(state, x, y)[0]

  together, alone = run([4, 5]), run([5])
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(
      np.asarray(a)[1], np.asarray(b)[0], rtol=1e-4, atol=1e-5
    ),
    together.params,
    alone.params,
  )
  assert not np.allclose(
    together.params["conv_0"]["kernel"][0], together.params["conv_0"]["kernel"][1]
  )
