"""The population axis sharded over 4 forced CPU devices gives the weights of one device."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from zoo_jax.engine import sharding
from zoo_jax import zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    import jax
    assert jax.device_count() == 4, jax.devices()
    from test_train import tiny_config
    from zoo_jax import train
    from zoo_jax.engine import sharding
    shard_models = sharding.shard_models
    def spy(tree, mesh):
      out = shard_models(tree, mesh)
      print("DEVICES", len(jax.tree.leaves(out)[0].sharding.device_set), jax.tree.leaves(out)[0].shape[0])
      return out
    sharding.shard_models = spy
    # 5 models per cohort -> padded to 8, two per device.
    train.train_and_evaluate(tiny_config(num_epochs=1, shard=True, **{{"population.num_seeds": 5,
        "population.grid.learning_rate": (1e-3,)}}), {workdir!r})
""")


def test_padded_index_repeats_the_last_model():
  np.testing.assert_array_equal(sharding.padded_index(5, 4), [0, 1, 2, 3, 4, 4, 4, 4])
  np.testing.assert_array_equal(sharding.padded_index(8, 4), np.arange(8))
  np.testing.assert_array_equal(sharding.padded_index(3, 1), np.arange(3))


@pytest.mark.slow
def test_sharded_run_over_4_devices_equals_one_device(tmp_path):
  from test_train import tiny_config
  from zoo_jax import train

  sharded_dir, single_dir = str(tmp_path / "sharded"), str(tmp_path / "single")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  script = _SCRIPT.format(root=ROOT, tests=os.path.join(ROOT, "tests"), workdir=sharded_dir)
  result = subprocess.run(
    [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=900
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "DEVICES 4 8" in result.stdout
  train.train_and_evaluate(
    tiny_config(
      num_epochs=1,
      shard=False,
      **{"population.num_seeds": 5, "population.grid.learning_rate": (1e-3,)},
    ),
    single_dir,
  )
  a, b = zoo.Zoo(sharded_dir), zoo.Zoo(single_dir)
  assert len(a.models) == 5 and a.epochs == [0, 1]  # padding copies are not in the zoo
  # Each device runs a cohort of 2 instead of 5: XLA may reorder float sums, nothing more.
  np.testing.assert_allclose(a.flat(epoch=1), b.flat(epoch=1), rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(a.flat(epoch=0), b.flat(epoch=0))
  np.testing.assert_allclose(a.metrics["test_acc"], b.metrics["test_acc"], atol=2e-3)
