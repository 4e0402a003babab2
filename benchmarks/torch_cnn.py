"""PyTorch reference for benchmarks: the Model Zoos CNN-s and its plain training loop.

The same layers as `zoo_jax.models.CNNSmall` (VALID convs, max-pool before the
activation), written the way the published zoos were trained: one model, one process,
`torch.optim.Adam`. Benchmark-only; torch is not a zoo_jax dependency.
"""

import torch
from torch import nn


def cnn_s(in_channels: int = 1, num_classes: int = 10) -> nn.Module:
  """CNN-s: conv8 5x5, pool, tanh -> conv6 5x5, pool, tanh -> conv4 2x2, tanh -> 36 -> 20 -> 10."""
  return nn.Sequential(
    nn.Conv2d(in_channels, 8, 5),
    nn.MaxPool2d(2),
    nn.Tanh(),
    nn.Conv2d(8, 6, 5),
    nn.MaxPool2d(2),
    nn.Tanh(),
    nn.Conv2d(6, 4, 2),
    nn.Tanh(),
    nn.Flatten(),
    nn.Linear(36, 20),
    nn.Tanh(),
    nn.Linear(20, num_classes),
  )


def make_train_epoch(
  model: nn.Module,
  optimizer: torch.optim.Optimizer,
  images: torch.Tensor,
  labels: torch.Tensor,
  *,
  batch_size: int,
  steps: int,
  mean: float,
  std: float,
):
  """Returns `train_epoch(generator)`: `steps` Adam steps over a fresh permutation.

  `images` are uint8 [N, C, H, W], normalised per batch inside the step, like the
  zoo_jax engine (which gathers uint8 batches by index on the device).
  """
  loss_fn = nn.CrossEntropyLoss()

  def train_epoch(generator: torch.Generator) -> float:
    order = torch.randperm(images.shape[0], generator=generator)[: steps * batch_size]
    total = 0.0
    for idx in order.view(steps, batch_size):
      x = (images[idx].float() / 255.0 - mean) / std
      optimizer.zero_grad(set_to_none=True)
      loss = loss_fn(model(x), labels[idx])
      loss.backward()
      optimizer.step()
      total += loss.item()
    return total / steps

  return train_epoch
