"""The encoders' training loop: learns, resumes to the same result, refuses bad data."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from zoo_jax.encoders import training


def _problem():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(96, 3)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3).astype(np.float32)
  tx = optax.adam(0.05)

  @jax.jit
  def step(params, opt_state, batch, key):
    bx, by = batch
    noise = 0.01 * jax.random.normal(
      key, by.shape
    )  # uses the step key: resumed keys must match too

    def loss_fn(p):
      return jnp.mean((bx @ p["w"] + p["b"] - by - noise) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, {"loss": loss}

  params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
  return step, params, tx.init(params), (x, y)


def test_fit_learns():
  step, params, opt_state, data = _problem()
  params, _, history = training.fit(
    step,
    params,
    opt_state,
    data,
    key=jax.random.key(0),
    num_epochs=30,
    batch_size=16,
    progress=False,
  )
  assert history[-1]["loss"] < 0.01 * history[0]["loss"]
  np.testing.assert_allclose(params["w"], [1.0, -2.0, 0.5], atol=0.05)
  assert [h["epoch"] for h in history] == list(range(30))


def test_resumed_fit_equals_uninterrupted(tmp_path):
  step, params, opt_state, data = _problem()
  kwargs = dict(
    key=jax.random.key(1),
    batch_size=16,
    progress=False,
    epoch_data=lambda k: (data[0], data[1] + 0.0 * jax.random.normal(k, data[1].shape)),
  )
  straight, _, history = training.fit(step, params, opt_state, data, num_epochs=6, **kwargs)
  # A run stopped after 3 epochs, then started again with the same arguments, picks up at epoch 3.
  ckpt = str(tmp_path / "ckpt")
  training.fit(step, params, opt_state, data, num_epochs=3, checkpoint_dir=ckpt, **kwargs)
  resumed, _, resumed_history = training.fit(
    step, params, opt_state, data, num_epochs=6, checkpoint_dir=ckpt, **kwargs
  )
  jax.tree.map(np.testing.assert_array_equal, resumed, straight)
  assert resumed_history == history


def test_fit_refuses_empty_data_and_reports_divergence():
  step, params, opt_state, data = _problem()
  with pytest.raises(ValueError, match="no examples"):
    training.fit(
      step,
      params,
      opt_state,
      (data[0][:0], data[1][:0]),
      key=jax.random.key(0),
      num_epochs=1,
      batch_size=4,
      progress=False,
    )
  bad = (data[0], data[1] * np.nan)
  with pytest.raises(FloatingPointError, match="non-finite"):
    training.fit(
      step,
      params,
      opt_state,
      bad,
      key=jax.random.key(0),
      num_epochs=1,
      batch_size=4,
      progress=False,
    )


def test_checkpoints_follow_the_interval_and_always_keep_the_last_epoch(tmp_path):
  """checkpoint_every_s: 0 saves every epoch; a long interval saves only the last one, which resumes."""
  import orbax.checkpoint as ocp

  step, params, opt_state, data = _problem()
  kwargs = dict(key=jax.random.key(1), batch_size=16, progress=False)
  saved = lambda d: sorted(ocp.CheckpointManager(d).all_steps())
  training.fit(
    step,
    params,
    opt_state,
    data,
    num_epochs=4,
    checkpoint_dir=str(tmp_path / "every"),
    checkpoint_every_s=0,
    **kwargs,
  )
  assert saved(str(tmp_path / "every")) == [2, 3]  # max_to_keep=2
  rare = str(tmp_path / "rare")
  done, _, history = training.fit(
    step,
    params,
    opt_state,
    data,
    num_epochs=4,
    checkpoint_dir=rare,
    checkpoint_every_s=1e9,
    **kwargs,
  )
  assert saved(rare) == [3]
  again, _, again_history = training.fit(
    step,
    params,
    opt_state,
    data,
    num_epochs=4,
    checkpoint_dir=rare,
    checkpoint_every_s=1e9,
    **kwargs,
  )
  jax.tree.map(np.testing.assert_array_equal, again, done)
  assert again_history == history


def test_select_returns_the_best_epoch_and_a_resumed_run_keeps_it(tmp_path):
  """With `select`, fit returns the params of the epoch that scored best, also across a resume."""
  step, params, opt_state, data = _problem()
  kwargs = dict(key=jax.random.key(2), batch_size=16, progress=False)
  # The params after each epoch e (fit is deterministic given its key).
  after = [
    training.fit(step, params, opt_state, data, num_epochs=e + 1, **kwargs)[0] for e in range(6)
  ]
  score = lambda p: -float((p["w"][0] - 0.6) ** 2)  # peaks where w[0] passes 0.6 on its way to 1
  best = int(np.argmax([score(p) for p in after]))
  assert 0 < best < 5  # the planted optimum is inside the run, not at its end
  chosen, _, history = training.fit(
    step, params, opt_state, data, num_epochs=6, select=score, **kwargs
  )
  jax.tree.map(np.testing.assert_array_equal, chosen, after[best])
  assert [h["select"] for h in history] == pytest.approx([score(p) for p in after])
  # Stopped after epoch best + 1, then resumed: the best params come back from the checkpoint.
  ckpt = str(tmp_path / "ckpt")
  training.fit(
    step,
    params,
    opt_state,
    data,
    num_epochs=best + 2,
    select=score,
    checkpoint_dir=ckpt,
    checkpoint_every_s=0,
    **kwargs,
  )
  resumed, _, resumed_history = training.fit(
    step, params, opt_state, data, num_epochs=6, select=score, checkpoint_dir=ckpt, **kwargs
  )
  jax.tree.map(np.testing.assert_array_equal, resumed, after[best])
  assert resumed_history == history


def test_buckets_give_batches_of_one_bucket_and_trim_runs_on_each():
  x = np.arange(50, dtype=np.float32)
  buckets = np.where(np.arange(50) < 30, 7, 3)  # 30 rows of bucket 7, 20 of bucket 3
  seen = []

  def step(params, opt_state, batch, key):
    seen.append(np.asarray(batch))
    return params, opt_state, {"loss": jnp.zeros(())}

  trimmed = []

  def trim(batch):
    trimmed.append(len(batch))
    return batch

  kwargs = dict(key=jax.random.key(0), num_epochs=2, batch_size=8, progress=False)
  training.fit(step, {}, (), x, buckets=buckets, trim=trim, **kwargs)
  assert len(seen) == 2 * (30 // 8 + 20 // 8) == len(trimmed)
  for batch in seen:
    assert len(batch) == 8 and len(set(buckets[batch.astype(int)])) == 1
  epoch = np.concatenate(seen[: len(seen) // 2]).astype(int)
  assert len(set(epoch)) == len(epoch)  # no row twice in an epoch
  first = [buckets[int(b[0])] for b in seen[: len(seen) // 2]]
  assert first != sorted(first) and first != sorted(first, reverse=True)  # buckets interleaved
  # One bucket is the plain order, batch for batch.
  plain, one = [], []
  for out, extra in ((plain, {}), (one, {"buckets": np.zeros(50)})):
    seen.clear()
    training.fit(step, {}, (), x, **extra, **kwargs)
    out.extend(seen)
  np.testing.assert_array_equal(np.stack(plain), np.stack(one))
  with pytest.raises(ValueError, match="one id per row"):
    training.fit(step, {}, (), x, buckets=np.zeros(49), **kwargs)
