"""Streaming a zoo from disk (zoo_jax.encoders.streaming) gives what loading it whole gives."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

from configs import hyperrep as hyperrep_config
from zoo_jax import encode, weights
from zoo_jax.encoders import streaming
from zoo_jax import zoo as zoo_lib
from zoo_jax.convert.writer import param_shapes
from zoo_jax.encoders import training

SIZES = (7, 5)  # models per cohort: cohorts of different sizes, model ids interleave nothing
EPOCHS = 3


@pytest.fixture(scope="module")
def synthetic_zoo(tmp_path_factory) -> str:
  """12 CNN-s models in 2 cohorts, epochs 0..3, random weights (one blown-up state), random metrics."""
  workdir = str(tmp_path_factory.mktemp("zoo"))
  n = sum(SIZES)
  table = pd.DataFrame(
    {
      "model_id": np.arange(n),
      "cohort": np.repeat(np.arange(len(SIZES)), SIZES),
      "cohort_index": np.concatenate([np.arange(s) for s in SIZES]),
      "seed": np.arange(n),
      "arch": "cnn_s",
      "activation": "tanh",
      "dropout": 0.0,
      "init": "synthetic",
      "optimizer": "adam",
      "learning_rate": 1e-3,
      "weight_decay": 0.0,
    }
  )
  zoo_lib.write_json_atomic({"synthetic": True}, os.path.join(workdir, zoo_lib.CONFIG_FILE))
  zoo_lib.write_table_atomic(table, os.path.join(workdir, zoo_lib.MODELS_FILE))
  shapes, rng = param_shapes("cnn_s", 1), np.random.default_rng(0)
  writer, rows = zoo_lib.ZooWriter(workdir, training_state=False), []
  for epoch in range(EPOCHS + 1):
    params = {
      c: jax.tree.map(lambda s: rng.normal(0, 0.1, (size,) + s.shape).astype(np.float32), shapes)
      for c, size in enumerate(SIZES)
    }
    if epoch == 2:  # model 8 (cohort 1, row 1) blows up: the hygiene filter drops this state
      params[1] = jax.tree.map(lambda x: _scaled_row(x, 1, 1e3), params[1])
    metrics = {
      c: {name: rng.uniform(0, 1, size).astype(np.float32) for name in zoo_lib.METRIC_COLUMNS}
      for c, size in enumerate(SIZES)
    }
    for c, size in enumerate(SIZES):
      metrics[c]["diverged"] = np.zeros(size, bool)
    writer.save_weights(epoch, params, metrics)
    rows.append(
      zoo_lib.metrics_rows(table, epoch, metrics, {c: m["diverged"] for c, m in metrics.items()})
    )
  writer.close()
  zoo_lib.write_table_atomic(pd.concat(rows), os.path.join(workdir, zoo_lib.METRICS_FILE))
  return workdir


def _scaled_row(x: np.ndarray, row: int, factor: float) -> np.ndarray:
  x = x.copy()
  x[row] *= factor
  return x


def _buffer_mb(rows: int, spec) -> float:
  return rows * 4 * spec.size / 2**20


def test_streamed_states_equal_loaded_states(synthetic_zoo):
  loaded = encode.load_states(synthetic_zoo)
  streamed = encode.load_states(synthetic_zoo, stream=True)
  assert isinstance(streamed.flat, streaming.StreamedFlat)
  assert (
    len(loaded.flat) == 12 * (EPOCHS + 1) - 1 and streamed.hygiene == loaded.hygiene
  )  # the blown-up one
  pd.testing.assert_frame_equal(streamed.table, loaded.table)
  np.testing.assert_array_equal(streamed.flat[:], loaded.flat)
  index = np.array([40, 3, 3, 17, 0, 29])  # any order, repeats, across epochs and cohorts
  np.testing.assert_array_equal(streamed.flat[index], loaded.flat[index])
  np.testing.assert_array_equal(streamed.flat[5:23], loaded.flat[5:23])
  keep = np.arange(len(loaded.flat)) % 3 != 1  # a split: rows() stays on disk
  view = streamed.rows(keep)
  assert isinstance(view.flat, streaming.StreamedFlat)
  np.testing.assert_array_equal(view.flat[:], loaded.rows(keep).flat)
  checked = weights.filter_states(streamed.flat, streamed.spec, max_abs=0.3)  # read block by block
  expected = weights.filter_states(loaded.flat, loaded.spec, max_abs=0.3)
  np.testing.assert_array_equal(checked.keep, expected.keep)
  np.testing.assert_allclose(checked.layer_rms, expected.layer_rms)
  np.testing.assert_allclose(
    streaming.layer_variances(view.flat, view.spec, block_bytes=1000),  # 1-row blocks
    weights.layer_variances(weights.unflatten(view.flat[:], view.spec), view.spec),
    rtol=1e-5,
  )


@pytest.mark.parametrize("buffer_rows", [1, 5, 13, 10_000])
def test_shuffled_batches_draw_every_state_once_in_epoch_order(synthetic_zoo, buffer_rows):
  loaded = encode.load_states(synthetic_zoo)
  keep = np.arange(len(loaded.flat)) % 4 != 2
  spec = loaded.spec
  flat = (
    encode.load_states(synthetic_zoo, stream=True, buffer_mb=_buffer_mb(buffer_rows, spec))
    .rows(keep)
    .flat
  )
  expected = loaded.rows(keep).flat
  assert flat.buffer_rows == buffer_rows
  key, num = jax.random.key(7), len(expected)
  order = flat.epoch_order(key)
  np.testing.assert_array_equal(np.sort(order), np.arange(num))
  schedule = streaming.block_order(key, flat.blocks(), flat.buffer_rows)
  assert max(sum(len(flat.blocks()[b]) for b in window) for window, _ in schedule) <= buffer_rows
  batches = list(flat.shuffled_batches(key, 4))
  assert len(batches) == num // 4 and all(b.shape == (4, spec.size) for b in batches)
  np.testing.assert_array_equal(np.concatenate(batches), expected[order[: num // 4 * 4]])
  if buffer_rows >= num:  # the buffer holds every state: the in-memory order
    np.testing.assert_array_equal(order, np.asarray(jax.random.permutation(key, num)))
  else:  # blocks are shuffled too: not simply table order
    assert not np.array_equal(order, np.sort(order))


def test_fit_on_a_stream_equals_fit_in_memory(synthetic_zoo):
  loaded = encode.load_states(synthetic_zoo)
  streamed = encode.load_states(synthetic_zoo, stream=True)  # the default buffer holds this zoo
  tx = optax.sgd(0.1)

  @jax.jit
  def step(w, opt_state, batch, key):
    loss, grad = jax.value_and_grad(lambda w: jnp.mean((batch @ w - 1.0) ** 2))(w)
    updates, opt_state = tx.update(grad, opt_state)
    return optax.apply_updates(w, updates), opt_state, {"loss": loss}

  w = jnp.zeros(loaded.spec.size)
  runs = [
    training.fit(
      step, w, tx.init(w), data, key=jax.random.key(3), num_epochs=2, batch_size=5, progress=False
    )
    for data in (loaded.flat, streamed.flat)
  ]
  np.testing.assert_array_equal(runs[0][0], runs[1][0])
  assert runs[0][2] == runs[1][2]


def _hyperrep_config(stream: bool):
  c = hyperrep_config.get_config()
  c.num_seeds, c.progress_bar, c.predictors = 1, False, ("ridge",)
  c.properties = ("test_acc", "epoch")
  c.hyperrep.num_epochs, c.hyperrep.batch_size = 2, 8
  c.hyperrep.model.d_model, c.hyperrep.model.num_heads, c.hyperrep.model.num_blocks = 16, 2, 1
  c.hyperrep.model.latent_dim = 8
  c.stream = stream
  return c


@pytest.mark.slow
def test_encode_command_streamed_equals_in_memory(synthetic_zoo, tmp_path):
  outs = {}
  for stream in (False, True):
    workdir = str(tmp_path / f"stream_{stream}")
    results = encode.encode_and_evaluate(_hyperrep_config(stream), [synthetic_zoo], workdir)
    outs[stream] = (
      results,
      pd.read_csv(os.path.join(workdir, encode.PER_SEED_FILE)),
      dict(np.load(os.path.join(workdir, "embeddings.npz"))),
    )
  pd.testing.assert_frame_equal(outs[True][1], outs[False][1])
  assert outs[True][2].keys() == outs[False][2].keys()
  for key, value in outs[False][2].items():
    np.testing.assert_array_equal(outs[True][2][key], value)
  name = os.path.basename(synthetic_zoo)
  assert outs[True][2][f"{name}/embedding"].shape == (12 * (EPOCHS + 1) - 1, 8)


@pytest.mark.parametrize(
  "overrides, match",
  [
    ({"method": "statnn"}, "config.stream=True .* allowed with methods \\['hyperrep'\\]"),
    ({"stream_buffer_mb": 0.0}, "config.stream_buffer_mb must be > 0"),
  ],
)
def test_bad_stream_config_names_the_field(overrides, match, synthetic_zoo, tmp_path):
  config = _hyperrep_config(stream=True)
  config.update(overrides)
  with pytest.raises(ValueError, match=match):
    encode.encode_and_evaluate(config, [synthetic_zoo], str(tmp_path))
  assert not os.listdir(tmp_path)


def test_bound_malloc_sets_glibc_to_return_freed_memory():
  """The setting zoo_jax.encode makes when streaming: glibc accepts every mallopt parameter."""
  import ctypes.util

  if ctypes.util.find_library("c") != "libc.so.6":
    pytest.skip("not glibc: streaming.bound_malloc is a no-op there")
  assert streaming.bound_malloc()
