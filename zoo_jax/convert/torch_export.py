"""Weights between zoo_jax (Flax) and the Model Zoos' PyTorch modules, both ways, exactly.

The published classes (`CNN` = CNN-s, `CNN3` = CNN-l in the Model Zoos' `def_net.py`) keep
their layers in `self.module_list`, so a state_dict's keys are `module_list.<i>.weight` /
`.bias` with `i` the position among *all* layers (pooling, activations, dropout, flatten
included). CNN-s adds a Dropout after each activation only when p > 0 (conv/linear at 0, 3,
6, 9, 11 without dropout; 0, 4, 8, 11, 14 with); CNN-l always has them (0, 4, 8, 13, 16).
`torch_model` rebuilds exactly these layouts, so published checkpoints load with strict=True.

Conventions converted: conv weight OIHW <-> HWIO; linear weight (out, in) <-> (in, out); and
the first dense layer's inputs, which PyTorch flattens as (C, H, W) and zoo_jax as (H, W, C).
Everything is a permutation: export then import returns identical arrays.

ResNet-18 (`resnet18`, def_net.py's `ResNet18`, a torchvision ResNet) keeps torchvision's names:
`conv1`, `bn1`, `layer{1-4}.{0,1}.conv1/bn1/conv2/bn2/downsample.{0,1}`, `fc`. Its BatchNorm state
is the zoo's `batch_stats` collection (running_mean/running_var <-> mean/var; weight/bias <->
scale/bias); it is exported and imported as a variables dict {"params", "batch_stats"}.

torch is optional (a test-only dependency): it is imported only by the functions that build
torch objects. `from_torch_state_dict` takes torch tensors or numpy arrays.
"""

import collections
import re
from typing import Any, Mapping

import numpy as np

# Layer sequences of the published classes. ("conv", out, kernel), ("linear", out), or the name
# of a parameter-free layer; "dropout?" exists only when the dropout rate is > 0.
_LAYERS = {
  "cnn_s": [
    ("conv", 8, 5),
    "pool",
    "act",
    "dropout?",
    ("conv", 6, 5),
    "pool",
    "act",
    "dropout?",
    ("conv", 4, 2),
    "act",
    "flatten",
    ("linear", 20),
    "act",
    "dropout?",
    ("linear", 10),
  ],
  "cnn_l": [
    ("conv", 16, 3),
    "pool",
    "act",
    "dropout",
    ("conv", 32, 3),
    "pool",
    "act",
    "dropout",
    ("conv", 15, 3),
    "pool",
    "act",
    "dropout",
    "flatten",
    ("linear", 20),
    "act",
    "dropout",
    ("linear", 10),
  ],
}
# The name of the class in the Model Zoos' code, for messages.
PUBLISHED_CLASS = {"cnn_s": "CNN", "cnn_l": "CNN3"}
# The input (H, W) of each architecture, which fixes the first dense layer's input (H, W, C).
_INPUT_SIZE = {"cnn_s": 28, "cnn_l": 32}
_STATE_KEY = re.compile(
  r"^(?P<prefix>.*?)(?P<index>\d+)\.(?P<kind>weight|bias|log_sigma2|log_sigma2_bias)$"
)


RESNET = "resnet18"
ARD_BIAS_INIT = (
  -10.0
)  # LinearARD's unused log_sigma2_bias, written with the ard_init value on export


def _check_arch(arch: str) -> None:
  if arch not in _LAYERS and arch != RESNET:
    raise ValueError(
      f"Unknown architecture {arch!r} for PyTorch conversion; allowed values: "
      f"{sorted([*_LAYERS, RESNET])}."
    )


def _layers(arch: str, dropout: float) -> list:
  """The published module list of `arch`: its entries, with conditional dropout resolved."""
  _check_arch(arch)
  if dropout > 0:
    return [layer.rstrip("?") if isinstance(layer, str) else layer for layer in _LAYERS[arch]]
  return [layer for layer in _LAYERS[arch] if layer != "dropout?"]


def _weighted_indices(arch: str, dropout: float) -> tuple[list[int], list[int]]:
  """Positions of the conv layers and of the linear layers in the published module list."""
  layers = _layers(arch, dropout)
  conv = [i for i, layer in enumerate(layers) if isinstance(layer, tuple) and layer[0] == "conv"]
  linear = [
    i for i, layer in enumerate(layers) if isinstance(layer, tuple) and layer[0] == "linear"
  ]
  return conv, linear


def _flat_shape(arch: str) -> tuple[int, int, int]:
  """(H, W, C) of the activation that the first dense layer flattens."""
  size, channels = _INPUT_SIZE[arch], 0
  for layer in _LAYERS[arch]:
    if isinstance(layer, tuple) and layer[0] == "conv":
      size, channels = size - layer[2] + 1, layer[1]
    elif layer == "pool":
      size //= 2
    elif layer == "flatten":
      return size, size, channels
  raise AssertionError(arch)


def _unwrap(params: Mapping[str, Any]) -> Mapping[str, Any]:
  return params["params"] if set(params) == {"params"} else params


def to_torch_state_dict(
  params: Mapping[str, Any], arch: str, dropout: float = 0.0
) -> "collections.OrderedDict":
  """zoo_jax params of one model -> the state_dict of the published PyTorch module.

  Args:
    params: {'conv_0': {'kernel' HWIO, 'bias'}, ..., 'dense_1': {...}} (or wrapped in {'params': ...}).
    arch: "cnn_s" or "cnn_l".
    dropout: the model's dropout rate; CNN-s numbers its layers differently when it is > 0.
  Returns:
    OrderedDict of float32 torch tensors, keys `module_list.<i>.weight/bias`, loadable with
    strict=True into `torch_model(arch, activation, channels_in, dropout)`.
  """
  import torch

  _check_arch(arch)
  if arch == RESNET:
    return collections.OrderedDict(
      (k, torch.tensor(v)) for k, v in _resnet_to_torch(params).items()
    )
  log_sigma2 = params.get("log_sigma2") if "params" in params else None
  arrays = _torch_layers(params["params"] if "params" in params else params, arch)
  conv_at, linear_at = _weighted_indices(arch, dropout)
  if log_sigma2 is not None:  # a sparsified twin: the Model Zoos' CNN_ARD layout
    sigmas = _torch_layers(
      {
        name: {
          "kernel": layer["kernel"],
          "bias": layer.get(
            "bias", np.full(np.shape(layer["kernel"])[-1:], ARD_BIAS_INIT, np.float32)
          ),
        }
        for name, layer in log_sigma2.items()
      },
      arch,
    )
  state = collections.OrderedDict()
  for i, (index, (weight, bias)) in enumerate(zip(conv_at + linear_at, arrays)):
    state[f"module_list.{index}.weight"] = torch.tensor(weight)
    state[f"module_list.{index}.bias"] = torch.tensor(bias)
    if log_sigma2 is not None:
      state[f"module_list.{index}.log_sigma2"] = torch.tensor(sigmas[i][0])
      state[f"module_list.{index}.log_sigma2_bias"] = torch.tensor(sigmas[i][1])
  return state


def _torch_layers(params: Mapping[str, Any], arch: str) -> list[tuple[np.ndarray, np.ndarray]]:
  """zoo_jax params -> [(weight, bias)] in PyTorch layouts, conv layers then linear layers."""
  names = [f"conv_{i}" for i in range(3)] + ["dense_0", "dense_1"]
  missing = [n for n in names if n not in params]
  if missing or len(params) != len(names):
    raise ValueError(f"{arch} params need the layers {names}; got {sorted(params)}.")
  out = []
  for name in names:
    kernel = np.asarray(params[name]["kernel"], np.float32)
    bias = np.asarray(params[name]["bias"], np.float32)
    if name.startswith("conv"):
      weight = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    elif name == "dense_0":
      h, w, c = _flat_shape(arch)
      # Our rows are (h, w, c)-ordered, PyTorch's columns (c, h, w)-ordered.
      weight = kernel.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(kernel.shape[1], -1)
    else:
      weight = kernel.T
    out.append((weight, bias))
  return out


def from_torch_state_dict(
  state_dict: Mapping[str, Any], arch: str, channels_in: int | None = None
) -> dict:
  """A state_dict of a published CNN-s / CNN-l module -> zoo_jax params of one model.

  Conv and linear layers are found by their module index (`module_list.<i>.weight`, or
  `<i>.weight` for an `nn.Sequential`), in order, so dropout layers may or may not be there.
  Returns {'conv_0': {'kernel' HWIO, 'bias'}, ..., 'dense_1': {...}} as float32 numpy arrays;
  for a sparsified twin (CNN_ARD: `log_sigma2` / `log_sigma2_bias` beside each layer) the
  variables {'params': ..., 'log_sigma2': ...} in zoo_jax.sparsify's layout; for resnet18 the
  variables {'params': ..., 'batch_stats': ...}.
  Raises ValueError naming the key and the expected shape when the state_dict does not hold
  `arch`'s layers (with `channels_in` input channels, when given).
  """
  _check_arch(arch)
  if arch == RESNET:
    return _resnet_from_torch(state_dict, channels_in)
  if any(
    key.endswith("log_sigma2") for key in state_dict
  ):  # a sparsified twin (CNN_ARD / CNN_ARD3)
    plain = {
      k: v for k, v in state_dict.items() if not k.endswith(("log_sigma2", "log_sigma2_bias"))
    }
    params = from_torch_state_dict(plain, arch, channels_in)
    sigmas = {
      k.replace("log_sigma2_bias", "bias").replace("log_sigma2", "weight"): v
      for k, v in state_dict.items()
      if k.endswith(("log_sigma2", "log_sigma2_bias"))
    }
    if set(sigmas) != set(plain):
      raise ValueError(
        f"A CNN_ARD state_dict needs log_sigma2 and log_sigma2_bias beside every weight and "
        f"bias; missing for {sorted(set(plain) - set(sigmas))[:4]}."
      )
    log_sigma2 = from_torch_state_dict(sigmas, arch, channels_in)
    # Only the convolutions' biases are variational in the Model Zoos code (LinearARD ignores its log_sigma2_bias).
    log_sigma2 = {
      name: layer if name.startswith("conv") else {"kernel": layer["kernel"]}
      for name, layer in log_sigma2.items()
    }
    return {"params": params, "log_sigma2": log_sigma2}
  layers: dict[int, dict[str, np.ndarray]] = {}
  for key, value in state_dict.items():
    match = _STATE_KEY.match(key)
    if match is None:
      raise ValueError(
        f"Unexpected state_dict key {key!r}; expected 'module_list.<i>.weight' / '.bias'."
      )
    layers.setdefault(int(match["index"]), {})[match["kind"]] = (key, np.asarray(value, np.float32))
  ordered = [layers[i] for i in sorted(layers)]
  convs = [layer for layer in ordered if layer.get("weight", ("", np.zeros(0)))[1].ndim == 4]
  linears = [layer for layer in ordered if layer.get("weight", ("", np.zeros(0)))[1].ndim == 2]
  if len(convs) != 3 or len(linears) != 2 or len(ordered) != 5:
    raise ValueError(
      f"Expected the {PUBLISHED_CLASS[arch]} ({arch}) layers: 3 conv (4-d weight) and 2 linear (2-d weight), "
      f"each with weight and bias; got {[(k, tuple(a.shape)) for layer in ordered for k, a in layer.values()]}."
    )
  for layer in ordered:
    if set(layer) != {"weight", "bias"}:
      raise ValueError(
        f"Layer with keys {[k for k, _ in layer.values()]} lacks a weight or a bias."
      )
  channels = convs[0]["weight"][1].shape[1] if channels_in is None else int(channels_in)
  expected = _torch_shapes(arch, channels)
  for layer, shapes in zip(convs + linears, expected):
    for kind, shape in zip(("weight", "bias"), shapes):
      key, array = layer[kind]
      if array.shape != shape:
        raise ValueError(
          f"{key} has shape {tuple(array.shape)}; {PUBLISHED_CLASS[arch]} ({arch}) with "
          f"{channels} input channel(s) expects {shape}."
        )
  params = {}
  for i, layer in enumerate(convs):
    params[f"conv_{i}"] = {
      "kernel": layer["weight"][1].transpose(2, 3, 1, 0),
      "bias": layer["bias"][1],
    }
  h, w, c = _flat_shape(arch)
  weight = linears[0]["weight"][1]
  params["dense_0"] = {
    "kernel": weight.reshape(-1, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1),
    "bias": linears[0]["bias"][1],
  }
  params["dense_1"] = {"kernel": linears[1]["weight"][1].T, "bias": linears[1]["bias"][1]}
  return {
    name: {k: np.ascontiguousarray(v) for k, v in layer.items()} for name, layer in params.items()
  }


def _torch_shapes(arch: str, channels: int) -> list[tuple[tuple, tuple]]:
  """[(weight shape, bias shape)] of the conv then linear layers, in PyTorch layouts."""
  shapes, features = [], channels
  h, w, c = _flat_shape(arch)
  for layer in _LAYERS[arch]:
    if isinstance(layer, tuple) and layer[0] == "conv":
      shapes.append(((layer[1], features, layer[2], layer[2]), (layer[1],)))
      features = layer[1]
    elif layer == "flatten":
      features = h * w * c
    elif isinstance(layer, tuple) and layer[0] == "linear":
      shapes.append(((layer[1], features), (layer[1],)))
      features = layer[1]
  return shapes


def torch_model(
  arch: str, activation: str, channels_in: int, dropout: float = 0.0, num_classes: int = 10
):
  """The published PyTorch module of `arch` (the Model Zoos' `CNN` or `CNN3`), layer for layer.

  Same `module_list` layout, so its state_dict keys are those of the published checkpoints.
  Weights are PyTorch's default init; load real ones with `load_state_dict`. Activations
  follow zoo_jax.models.ACTIVATIONS (`leaky_relu` is the Model Zoos' `leakyrelu`).
  """
  import torch
  from torch import nn

  if arch == RESNET:
    return _torch_resnet18(channels_in, num_classes)
  activations = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
  }
  if activation not in activations:
    raise ValueError(f"Unknown activation {activation!r}; allowed values: {sorted(activations)}.")

  class PublishedCNN(nn.Module):
    def __init__(self):
      super().__init__()
      self.module_list = nn.ModuleList()
      features = channels_in
      h, w, c = _flat_shape(arch)
      for layer in _layers(arch, dropout):
        if isinstance(layer, tuple) and layer[0] == "conv":
          self.module_list.append(nn.Conv2d(features, layer[1], layer[2]))
          features = layer[1]
        elif isinstance(layer, tuple):
          self.module_list.append(nn.Linear(features, layer[1]))
          features = layer[1]
        elif layer == "pool":
          self.module_list.append(nn.MaxPool2d(2, 2))
        elif layer == "act":
          self.module_list.append(activations[activation]())
        elif layer == "dropout":
          self.module_list.append(nn.Dropout(dropout))
        else:
          self.module_list.append(nn.Flatten())
          features = h * w * c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
      for layer in self.module_list:
        x = layer(x)
      return x

  return PublishedCNN()


# ResNet-18: (zoo_jax module path, torchvision module path, kind) of every weighted layer.
def _resnet_layers() -> list[tuple[tuple[str, ...], str, str]]:
  layers = [(("conv1",), "conv1", "conv"), (("bn1",), "bn1", "bn")]
  for stage in range(1, 5):
    for block in range(2):
      ours, theirs = f"layer{stage}_{block}", f"layer{stage}.{block}"
      for name in ("conv1", "bn1", "conv2", "bn2"):
        layers.append(
          ((ours, name), f"{theirs}.{name}", name[:-1] if name.startswith("bn") else "conv")
        )
      if stage > 1 and block == 0:
        layers.append(((ours, "downsample_conv"), f"{theirs}.downsample.0", "conv"))
        layers.append(((ours, "downsample_bn"), f"{theirs}.downsample.1", "bn"))
  layers.append((("fc",), "fc", "linear"))
  return layers


def _get(tree: Mapping[str, Any], path: tuple[str, ...], what: str) -> Mapping[str, Any]:
  for name in path:
    if name not in tree:
      raise ValueError(f"resnet18 {what} lack the layer {'/'.join(path)}; got {sorted(tree)}.")
    tree = tree[name]
  return tree


def _resnet_to_torch(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  if "params" not in variables or "batch_stats" not in variables:
    raise ValueError(
      "resnet18 export needs the variables {'params', 'batch_stats'} (BatchNorm running "
      f"statistics included); got {sorted(variables)}."
    )
  params, stats = variables["params"], variables["batch_stats"]
  state = {}
  for path, key, kind in _resnet_layers():
    layer = _get(params, path, "params")
    if kind == "conv":
      state[f"{key}.weight"] = np.asarray(layer["kernel"], np.float32).transpose(3, 2, 0, 1)
    elif kind == "linear":
      state[f"{key}.weight"] = np.asarray(layer["kernel"], np.float32).T
      state[f"{key}.bias"] = np.asarray(layer["bias"], np.float32)
    else:
      running = _get(stats, path, "batch_stats")
      state[f"{key}.weight"] = np.asarray(layer["scale"], np.float32)
      state[f"{key}.bias"] = np.asarray(layer["bias"], np.float32)
      state[f"{key}.running_mean"] = np.asarray(running["mean"], np.float32)
      state[f"{key}.running_var"] = np.asarray(running["var"], np.float32)
      # Not tracked by Flax; PyTorch only reads it when BatchNorm momentum is None (not here).
      state[f"{key}.num_batches_tracked"] = np.asarray(0, np.int64)
  return {k: np.ascontiguousarray(v) for k, v in state.items()}


def _resnet_from_torch(state_dict: Mapping[str, Any], channels_in: int | None) -> dict:
  """A torchvision-layout ResNet-18 state_dict (optionally under a 'model.' prefix) -> {'params', 'batch_stats'}."""
  arrays = {}
  for key, value in state_dict.items():
    arrays[key[len("model.") :] if key.startswith("model.") else key] = value
  expected = {
    f"{key}.{field}"
    for _, key, kind in _resnet_layers()
    for field in {
      "conv": ("weight",),
      "linear": ("weight", "bias"),
      "bn": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
    }[kind]
  }
  missing, unexpected = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
  if missing or unexpected:
    raise ValueError(
      f"Not a ResNet-18 state_dict (def_net.py's ResNet18): missing keys {missing[:5]}, "
      f"unexpected keys {unexpected[:5]}."
    )
  take = lambda key: np.asarray(arrays[key], np.float32)
  conv1 = take("conv1.weight")
  if conv1.shape[1:] != (channels_in or conv1.shape[1], 3, 3) or conv1.shape[0] != 64:
    raise ValueError(
      f"conv1.weight has shape {tuple(conv1.shape)}; ResNet-18 expects "
      f"(64, {channels_in or 'C'}, 3, 3)."
    )
  params, stats = {}, {}
  for path, key, kind in _resnet_layers():
    where = params
    for name in path[:-1]:
      where = where.setdefault(name, {})
    if kind == "conv":
      where[path[-1]] = {"kernel": take(f"{key}.weight").transpose(2, 3, 1, 0)}
    elif kind == "linear":
      where[path[-1]] = {"kernel": take(f"{key}.weight").T, "bias": take(f"{key}.bias")}
    else:
      where[path[-1]] = {"scale": take(f"{key}.weight"), "bias": take(f"{key}.bias")}
      running = stats
      for name in path[:-1]:
        running = running.setdefault(name, {})
      running[path[-1]] = {"mean": take(f"{key}.running_mean"), "var": take(f"{key}.running_var")}
  contiguous = lambda tree: {
    k: contiguous(v) if isinstance(v, dict) else np.ascontiguousarray(v) for k, v in tree.items()
  }
  return {"params": contiguous(params), "batch_stats": contiguous(stats)}


def _torch_resnet18(channels_in: int, num_classes: int):
  """def_net.py's ResNet18 without torchvision: torchvision's ResNet-18 layout and names, a 3x3
  stride-1 conv1 without bias, no max-pool, BatchNorm with PyTorch's defaults."""
  from torch import nn

  class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int):
      super().__init__()
      self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.relu = nn.ReLU(inplace=True)
      self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.downsample = None
      if stride != 1 or inplanes != planes:
        self.downsample = nn.Sequential(
          nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
        )

    def forward(self, x):
      identity = x if self.downsample is None else self.downsample(x)
      out = self.relu(self.bn1(self.conv1(x)))
      return self.relu(self.bn2(self.conv2(out)) + identity)

  class ResNet18(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(channels_in, 64, 3, 1, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(64)
      self.relu = nn.ReLU(inplace=True)
      self.maxpool = nn.Identity()
      inplanes = 64
      for stage, planes in enumerate((64, 128, 256, 512), 1):
        stride = 1 if stage == 1 else 2
        blocks = [BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes, 1)]
        setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        inplanes = planes
      self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
      self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
      x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
      x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
      return self.fc(self.avgpool(x).flatten(1))

  return ResNet18()
