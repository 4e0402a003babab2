"""The README's code examples run as written."""

import os
import re

from test_train import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks():
  with open(os.path.join(ROOT, "README.md")) as f:
    return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_weights_example_runs():
  (block,) = [b for b in _blocks() if "from zoo_jax import weights" in b]
  exec(compile(block, "README.md", "exec"), {})


def test_zoo_loading_example_runs(tmp_path):
  from zoo_jax import train

  workdir = str(tmp_path / "zoo")
  train.train_and_evaluate(tiny_config(num_epochs=1), workdir)
  (block,) = [b for b in _blocks() if "from zoo_jax.zoo import Zoo" in b]
  namespace = {}
  exec(compile(block.replace("/tmp/zoo_mnist5k", workdir), "README.md", "exec"), namespace)
  assert namespace["X"] is not None and len(namespace["zoo"].epochs) == 2
