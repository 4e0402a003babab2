"""A Small CNN Zoo (Unterthiner et al., 2020) in its published file layout, written on the fly
(weights.npy, metrics.csv.gz, layout.csv), for the conversion and encoder-protocol tests."""

import os

import numpy as np
import pandas as pd

CNN_ZOO_ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
CNN_ZOO_STEPS = (0, 1, 20)

_KERAS_VARS = [
  (f"sequential/{layer}/{kind}:0", shape)
  for layer, kernel, out in (
    ("conv2d", (3, 3, 1, 16), 16),
    ("conv2d_1", (3, 3, 16, 16), 16),
    ("conv2d_2", (3, 3, 16, 16), 16),
    ("dense", (16, 10), 10),
  )
  for kind, shape in (("bias", (out,)), ("kernel", kernel))
]


def make_cnn_zoo(
  root,
  activations=CNN_ZOO_ACTIVATIONS,
  steps=CNN_ZOO_STEPS,
  missing=(),
  nan_weights=(),
  accuracy=lambda model, step: 0.1 + step / 100,
):
  """weights.npy, metrics.csv.gz, layout.csv as published (rows shuffled); returns {(model, step): row}.

  `accuracy(model, step)` gives each row's test accuracy."""
  os.makedirs(root, exist_ok=True)
  rng = np.random.RandomState(0)
  sizes = [int(np.prod(s)) for _, s in _KERAS_VARS]
  starts = np.cumsum([0] + sizes)
  pd.DataFrame(
    {
      "varname": [v for v, _ in _KERAS_VARS],
      "start_idx": starts[:-1],
      "end_idx": starts[1:],
      "size": sizes,
      "shape": [str(s) for _, s in _KERAS_VARS],
    }
  ).to_csv(os.path.join(root, "layout.csv"), index=False)
  rows, weights = [], {}
  for m, activation in enumerate(activations):
    flat = np.concatenate(
      [
        rng.randn(n) * (np.sqrt(2 / np.prod(s[:-1])) if len(s) > 1 else 0.1)
        for n, (_, s) in zip(sizes, _KERAS_VARS)
      ]
    ).astype(np.float32)
    for step in steps:
      flat = flat + (0.05 * rng.randn(flat.size).astype(np.float32) if step else 0)
      row = flat.copy()
      if (m, step) in nan_weights:
        row[200] = np.nan
      if (m, step) in missing:
        continue
      weights[m, step] = row
      rows.append(
        {
          "config.activation": activation,
          "config.b_init": "zeros",
          "config.dataset": "mnist",
          "config.dropout": [0.0, 0.2][m % 2],
          "config.init_std": 0.05,
          "config.l2reg": 1e-3 * m,
          "config.learning_rate": 0.01 / (m + 1),
          "config.optimizer": ["sgd", "adam"][m % 2],
          "config.random_seed": 42,
          "config.train_fraction": [1.0, 0.5][m % 2],
          "config.w_init": "he_normal",
          "modeldir": f"/cns/zoo/mnist/{m:05d}",
          "step": step,
          "test_accuracy": accuracy(m, step),
          "test_loss": np.nan if (m, step) in nan_weights else 2.0,
          "train_accuracy": 0.2,
          "train_loss": 1.5,
        }
      )
  order = rng.permutation(len(rows))
  pd.DataFrame(rows).iloc[order].to_csv(os.path.join(root, "metrics.csv.gz"), index=False)
  keys = list(weights)
  np.save(os.path.join(root, "weights.npy"), np.stack([weights[k] for k in keys])[order])
  return weights
