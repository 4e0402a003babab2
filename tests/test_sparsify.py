"""Sparsified twins: variational dropout (Molchanov et al., 2017) as in the Model Zoos' CNN_ARD zoos."""

import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from configs import sparsify as sparsify_config
from zoo_jax import models, sparsify, zoo
from zoo_jax.engine import variational


def _params(arch="cnn_s", channels=1, seed=0):
  size = models.INPUT_SIZES[arch][0]
  model = models.get_model(arch, activation="tanh", init="kaiming_uniform")
  return jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, size, size, channels)))["params"]


def test_kl_is_the_papers_approximation():
  params = _params()
  log_sigma2 = jax.tree.map(
    lambda w: jnp.full_like(w, -4.0), variational.init_log_sigma2(params, 0.0)
  )
  expected = 0.0
  for (
    name,
    layer,
  ) in log_sigma2.items():  # numpy, from the paper's eq. 14 with the Model Zoos' clamps
    bound = 8.0 if name.startswith("conv") else 10.0
    for k, s in layer.items():
      a = np.clip(
        np.asarray(s) - 2 * np.log(np.abs(np.asarray(params[name][k])) + 1e-15), -bound, bound
      )
      expected -= np.sum(
        0.63576 / (1 + np.exp(-(1.8732 + 1.48695 * a))) - 0.5 * np.log1p(np.exp(-a)) - 0.63576
      )
  np.testing.assert_allclose(
    float(jax.jit(variational.kl)(params, log_sigma2)), expected, rtol=1e-5
  )
  assert set(log_sigma2["dense_0"]) == {"kernel"} and set(log_sigma2["conv_0"]) == {
    "kernel",
    "bias",
  }


@pytest.mark.parametrize("arch,channels", [("cnn_s", 1), ("cnn_l", 3)])
def test_mean_network_is_the_zoo_architecture_and_noise_is_local(arch, channels):
  params = _params(arch, channels)
  size = models.INPUT_SIZES[arch][0]
  x = jax.random.normal(jax.random.key(1), (4, size, size, channels))
  model = models.get_model(arch, activation="tanh")
  apply_vd = jax.jit(lambda s, key: variational.apply_vd(arch, "tanh", params, s, x, key))
  mean = jax.jit(model.apply)({"params": params}, x)
  quiet = variational.init_log_sigma2(params, -10.0)
  np.testing.assert_allclose(
    jax.jit(lambda s: variational.apply_vd(arch, "tanh", params, s, x, None))(quiet),
    mean,
    rtol=1e-5,
    atol=1e-6,
  )
  noise = {
    v: float(jnp.std(apply_vd(variational.init_log_sigma2(params, v), jax.random.key(2)) - mean))
    for v in (-10.0, -4.0)
  }
  assert 0 < noise[-10.0] < noise[-4.0]  # Gaussian pre-activations, wider with sigma^2


def test_deployed_weights_and_sparsity_follow_the_threshold():
  params = _params()
  rng = np.random.default_rng(0)
  log_sigma2 = jax.tree.map(
    lambda w: jnp.asarray(rng.normal(0, 4, w.shape), jnp.float32),
    variational.init_log_sigma2(params, 0.0),
  )
  sparse = jax.jit(variational.deployed)(params, log_sigma2)
  alpha = jax.jit(variational.log_alpha)(params, log_sigma2)
  dropped = total = 0
  for name in params:
    mask = np.asarray(alpha[name]["kernel"]) >= 3
    np.testing.assert_array_equal(np.asarray(sparse[name]["kernel"])[mask], 0)
    np.testing.assert_array_equal(
      np.asarray(sparse[name]["kernel"])[~mask], np.asarray(params[name]["kernel"])[~mask]
    )
    dropped, total = dropped + mask.sum(), total + mask.size
  np.testing.assert_array_equal(
    sparse["dense_1"]["bias"], params["dense_1"]["bias"]
  )  # linear biases stay
  assert 0 < dropped < total
  np.testing.assert_allclose(
    float(jax.jit(variational.sparsity)(params, log_sigma2)), dropped / total, rtol=1e-6
  )


def test_twin_zoo_is_written_through_the_zoo_store(tiny_zoo, tmp_path):
  config = sparsify_config.get_config()
  config.num_epochs = 2
  config.batch_size = 50
  source = zoo.Zoo(tiny_zoo)
  chosen = source.select(activation="tanh", optimizer="adam")  # one cohort: one compilation
  twin = sparsify.sparsify_zoo(config, tiny_zoo, str(tmp_path / "twin"), model_ids=chosen)
  assert twin.epochs == [0, 1, 2] and list(twin.models["source_model"]) == list(chosen)
  assert set(twin.models["source_epoch"]) == {source.epochs[-1]} and set(
    twin.models["activation"]
  ) == {"tanh"}
  variables = twin.variables(epoch=0)
  assert set(variables) == {"params", "log_sigma2"}
  source_params = source.params(chosen, epoch=-1)
  jax.tree.map(
    np.testing.assert_array_equal, variables["params"], source_params
  )  # epoch 0 = the source
  # Epoch 0: log sigma^2 = -10, so exactly the weights with |w| <= exp(-6.5) have log alpha >= 3.
  kernels = [np.asarray(layer["kernel"]) for layer in source_params.values()]
  tiny = sum((np.abs(k.reshape(len(k), -1)) <= np.exp(-6.5)).sum(1) for k in kernels)
  first = twin.metrics[twin.metrics["epoch"] == 0].sort_values("model_id")
  np.testing.assert_allclose(first["sparsity"], tiny / sum(k[0].size for k in kernels), atol=1e-6)
  last = twin.metrics[twin.metrics["epoch"] == 2]
  assert last["sparsity"].between(0, 1).all() and last["test_acc"].between(0, 1).all()
  assert (last["sparsity"].to_numpy() >= first["sparsity"].to_numpy()).mean() > 0.5
  again = sparsify.sparsify_zoo(
    config, tiny_zoo, str(tmp_path / "twin"), model_ids=chosen
  )  # complete: kept
  pd.testing.assert_frame_equal(again.metrics, twin.metrics)
  with pytest.raises(ValueError, match="already holds another zoo"):
    sparsify.sparsify_zoo(config, tiny_zoo, str(tmp_path / "twin"), model_ids=chosen[:1])


def test_twin_exports_to_and_imports_from_the_cnn_ard_layout():
  from zoo_jax import convert

  params = _params()
  rng = np.random.default_rng(1)
  log_sigma2 = jax.tree.map(
    lambda w: np.asarray(rng.normal(-5, 3, w.shape), np.float32),
    variational.init_log_sigma2(params, 0.0),
  )
  variables = {"params": jax.tree.map(np.asarray, params), "log_sigma2": log_sigma2}
  state = convert.to_torch_state_dict(variables, "cnn_s")
  # CNN_ARD's keys: module_list.<i>.{weight, bias, log_sigma2, log_sigma2_bias} at 0, 3, 6, 9, 11.
  assert {k for k in state if k.endswith("log_sigma2")} == {
    f"module_list.{i}.log_sigma2" for i in (0, 3, 6, 9, 11)
  }
  assert tuple(state["module_list.0.log_sigma2"].shape) == tuple(
    state["module_list.0.weight"].shape
  )
  back = convert.from_torch_state_dict(state, "cnn_s", channels_in=1)
  jax.tree.map(np.testing.assert_array_equal, back, variables)
  del state["module_list.9.log_sigma2_bias"]
  with pytest.raises(ValueError, match="log_sigma2 and log_sigma2_bias beside every weight"):
    convert.from_torch_state_dict(state, "cnn_s")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Sparsifies SOURCE into WORKDIR and SIGKILLs itself as epoch 2 is about to be committed.
_KILLED_TWIN = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    from test_sparsify import _twin_config
    from zoo_jax import sparsify, zoo
    original = zoo.ZooWriter.save
    def save(self, epoch, *args):
      if epoch == 2:
        os.kill(os.getpid(), signal.SIGKILL)
      original(self, epoch, *args)
    zoo.ZooWriter.save = save
    sparsify.sparsify_zoo(_twin_config(), {source!r}, {workdir!r})
""")


def _twin_config():
  config = sparsify_config.get_config()
  config.num_epochs, config.batch_size, config.eval_batch_size = 3, 20, 20
  return config


@pytest.mark.slow
def test_killed_twin_run_resumes_to_the_uninterrupted_twin(tmp_path):
  from test_train import tiny_config
  from zoo_jax import train

  source = str(tmp_path / "source")
  train.train_and_evaluate(
    tiny_config(
      num_epochs=0,
      **{
        "dataset.train_size": 40,
        "dataset.eval_size": 20,
        "batch_size": 20,
        "population.num_seeds": 1,
      },
    ),
    source,
  )
  reference = sparsify.sparsify_zoo(_twin_config(), source, str(tmp_path / "reference"))
  workdir = str(tmp_path / "twin")
  script = _KILLED_TWIN.format(
    root=ROOT, tests=os.path.join(ROOT, "tests"), source=source, workdir=workdir
  )
  proc = subprocess.run(
    [sys.executable, "-c", script],
    capture_output=True,
    text=True,
    timeout=900,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
  assert zoo.Zoo(workdir).epochs == [0, 1]  # it died in epoch 2
  resumed = sparsify.sparsify_zoo(_twin_config(), source, workdir)
  assert resumed.epochs == reference.epochs == [0, 1, 2, 3]
  pd.testing.assert_frame_equal(resumed.models, reference.models)
  pd.testing.assert_frame_equal(resumed.metrics, reference.metrics)
  for epoch in reference.epochs:  # weights, log sigma^2, every stored metric: bit-identical
    jax.tree.map(
      np.testing.assert_array_equal,
      zoo.restore_numpy(resumed._manager, epoch),
      zoo.restore_numpy(reference._manager, epoch),
    )
  assert (reference.metrics["sparsity"] > 0).any()
