"""ResNet-18 of the Model Zoos: layout, BatchNorm state, and exact PyTorch export / import."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from zoo_jax import convert
from zoo_jax.models import get_model


def _variables(num_classes=10, channels=3, size=32, seed=0):
  """A ResNet-18 with non-trivial BatchNorm state (random scales, biases and running statistics)."""
  model = get_model("resnet18", activation="relu", init="kaiming_uniform", num_classes=num_classes)
  variables = jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, size, size, channels)))
  keys = iter(jax.random.split(jax.random.key(seed + 1), 1000))
  shifted = ("scale", "bias", "mean")  # shifted by noise; the variances scaled
  perturb = lambda path, x: (
    x + 0.1 * jax.random.normal(next(keys), x.shape)
    if path[-1].key in shifted
    else x * jax.random.uniform(next(keys), x.shape, minval=0.5, maxval=2.0)
  )
  variables = {
    "params": variables["params"],
    "batch_stats": jax.tree_util.tree_map_with_path(perturb, variables["batch_stats"]),
  }
  variables["params"] = jax.tree_util.tree_map_with_path(
    lambda path, x: perturb(path, x) if path[-1].key in ("scale", "bias") else x,
    variables["params"],
  )
  return model, variables


def _images(n, size, channels, seed=0):
  return np.random.default_rng(seed).normal(size=(n, size, size, channels)).astype(np.float32)


@pytest.fixture(scope="module")
def cifar10():
  return _variables()


@pytest.mark.parametrize("num_classes,channels,size", [(10, 3, 32), (100, 3, 32), (200, 3, 64)])
def test_layout_and_parameter_count_match_pytorch(num_classes, channels, size):
  model = get_model("resnet18", activation="relu", init="kaiming_uniform", num_classes=num_classes)
  x = jnp.zeros((2, size, size, channels))
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  ours = sum(x.size for x in jax.tree.leaves(variables["params"]))
  theirs = convert.torch_model("resnet18", "relu", channels, num_classes=num_classes)
  assert ours == sum(p.numel() for p in theirs.parameters())  # 11,173,962 for CIFAR-10
  assert sum(x.size for x in jax.tree.leaves(variables["batch_stats"])) == sum(
    b.numel() for name, b in theirs.named_buffers() if "running" in name
  )
  assert jax.eval_shape(model.apply, variables, x).shape == (2, num_classes)


def test_export_gives_pytorch_logits_and_import_round_trips(cifar10):
  model, variables = cifar10
  state = convert.to_torch_state_dict(variables, "resnet18")
  torch_net = convert.torch_model("resnet18", "relu", 3)
  torch_net.load_state_dict(state, strict=True)
  torch_net.eval()
  x = _images(4, 32, 3)
  with torch.no_grad():
    expected = torch_net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  ours = np.asarray(jax.jit(model.apply)(variables, x))
  assert np.all(np.asarray(variables["params"]["fc"]["bias"]) != 0)
  np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
  back = convert.from_torch_state_dict(torch_net.state_dict(), "resnet18")
  assert jax.tree.structure(back) == jax.tree.structure(jax.tree.map(np.asarray, variables))
  jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, variables))


def test_train_mode_uses_batch_statistics_like_pytorch(cifar10):
  model, variables = cifar10
  torch_net = convert.torch_model("resnet18", "relu", 3)
  torch_net.load_state_dict(convert.to_torch_state_dict(variables, "resnet18"))
  torch_net.train()
  x = _images(8, 32, 3, seed=1)
  with torch.no_grad():
    expected = torch_net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  ours, updated = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
    variables, x
  )
  np.testing.assert_allclose(
    np.asarray(ours), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max()
  )
  running_mean = torch_net.bn1.running_mean.numpy()
  np.testing.assert_allclose(
    np.asarray(updated["batch_stats"]["bn1"]["mean"]), running_mean, rtol=1e-5, atol=1e-6
  )
  # Every running statistic after the step, the variances included (PyTorch's unbiased update).
  back = convert.from_torch_state_dict(torch_net.state_dict(), "resnet18")["batch_stats"]
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-5),
    updated["batch_stats"],
    back,
  )
  assert not np.allclose(
    updated["batch_stats"]["bn1"]["mean"], variables["batch_stats"]["bn1"]["mean"]
  )


def test_import_of_a_prefixed_published_state_dict_and_errors(cifar10):
  _, variables = cifar10
  state = {f"model.{k}": v for k, v in convert.to_torch_state_dict(variables, "resnet18").items()}
  back = convert.from_torch_state_dict(state, "resnet18", channels_in=3)
  np.testing.assert_array_equal(
    back["params"]["fc"]["kernel"], np.asarray(variables["params"]["fc"]["kernel"])
  )
  del state["model.layer2.0.downsample.1.running_var"]
  with pytest.raises(ValueError, match="missing keys \\['layer2.0.downsample.1.running_var'\\]"):
    convert.from_torch_state_dict(state, "resnet18")
  with pytest.raises(ValueError, match="needs the variables \\{'params', 'batch_stats'\\}"):
    convert.to_torch_state_dict(variables["params"], "resnet18")
  with pytest.raises(ValueError, match="ReLU network"):
    jax.eval_shape(
      get_model("resnet18", activation="tanh").init, jax.random.key(0), jnp.zeros((1, 32, 32, 3))
    )


def test_batchnorm_running_variance_follows_pytorch_or_flax():
  """One training step of BatchNorm: running statistics as torch.nn.BatchNorm2d's ("unbiased"),
  or as flax.linen.BatchNorm's ("biased"); the output is the same either way."""
  import flax.linen as nn
  from zoo_jax.models.resnet import BatchNorm

  x = (
    np.random.default_rng(0).normal(2.0, 3.0, (4, 3, 3, 5)).astype(np.float32)
  )  # n = 36 per channel
  torch_bn = torch.nn.BatchNorm2d(5).train()
  with torch.no_grad():
    expected = torch_bn(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
  variables = BatchNorm(use_running_average=True).init(jax.random.key(0), x)
  outputs = {}
  for running_var in ("unbiased", "biased"):
    out, state = BatchNorm(use_running_average=False, running_var=running_var).apply(
      variables, x, mutable=["batch_stats"]
    )
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
      state["batch_stats"]["mean"], torch_bn.running_mean.numpy(), rtol=1e-6
    )
    outputs[running_var] = np.asarray(state["batch_stats"]["var"])
  np.testing.assert_allclose(outputs["unbiased"], torch_bn.running_var.numpy(), rtol=1e-6)
  _, flax_state = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5).apply(
    variables, x, mutable=["batch_stats"]
  )
  np.testing.assert_allclose(outputs["biased"], flax_state["batch_stats"]["var"], rtol=1e-5)
  assert not np.allclose(outputs["unbiased"], outputs["biased"], rtol=1e-3)
