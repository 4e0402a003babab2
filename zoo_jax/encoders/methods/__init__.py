"""Encode methods: how `zoo_jax.encode` turns weights into property predictions, one file each.

`config.method` names a module of this folder; it exposes `METHOD`, one of two kinds:

  FeatureMethod  fixed features per state, `featurizer(fit) -> (states -> [N, F])`; the encode
                 job fits each of `config.predictors` (ridge, gbt, mlp) on them. Examples:
                 statnn.py (weight statistics), flat.py (raw weights), hyperrep.py (a
                 self-supervised autoencoder's embeddings, `embeddings=True`).
  DirectMethod   a network trained end to end on the properties (properties.train_predictor):
                 `build(fit, num_outputs) -> Network` (the flax module, the states -> inputs
                 map, extra training arguments, an optional embedding). Examples: sne.py,
                 deepsets.py.

Both say whether they read zoos of another architecture than the training zoo
(`cross_architecture`); those they cannot read are booked "n/a: another architecture".
The method's own settings come from the config section of its name (config.sne, ...).
Adding a method is a new file here plus a config (configs/NAME.py with c.method = "NAME");
encode.py does not change. A method's network lives in its file (hyperrep.py, sne.py); networks
shared by several methods in encoders/baselines.py.
"""

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import ml_collections
import numpy as np

from zoo_jax import registry
from zoo_jax.encoders.states import ZooStates


@dataclasses.dataclass(frozen=True)
class Fit:
  """What a method sees when it is fitted for one seed."""

  config: ml_collections.ConfigDict
  train: ZooStates  # the seed's training states
  everything: Sequence[
    ZooStates
  ]  # the training pool and every further --zoo (e.g. for a common input width)
  seed: int
  checkpoint_dir: str  # this method's checkpoints for this seed (resumed after a crash)
  save_dir: str | None  # where to save the trained encoder (seed 0 only), or None
  held_out: frozenset[str] = frozenset()  # "zoo/model_id" of the pool's test models


@dataclasses.dataclass(frozen=True)
class FeatureMethod:
  """Features per state, then the config's predictors."""

  featurizer: Callable[[Fit], Callable[[ZooStates], np.ndarray]]
  cross_architecture: bool = False  # reads zoos of other architectures
  embeddings: bool = False  # its features are learned embeddings (written to embeddings.npz)


@dataclasses.dataclass(frozen=True)
class Network:
  """A direct method's network for one seed."""

  module: nn.Module  # module.apply(params, inputs) -> [B, num_outputs]
  inputs: Callable[[ZooStates], Any]  # states -> the module's inputs (a pytree with leading [N])
  train_kwargs: dict = dataclasses.field(
    default_factory=dict
  )  # more properties.train_predictor arguments
  embed: Callable[[Any, ZooStates], np.ndarray] | None = (
    None  # (params, states) -> [N, D], if it embeds
  )


@dataclasses.dataclass(frozen=True)
class DirectMethod:
  """A network trained on the properties; `config.train` sets its optimisation."""

  build: Callable[[Fit, int], Network]  # (fit, num_outputs) -> Network
  cross_architecture: bool = False


def names() -> tuple[str, ...]:
  """Every method name: the modules of this folder."""
  return registry.names(__name__)


def get(name: str) -> FeatureMethod | DirectMethod:
  """The named method; an unknown name raises a ValueError listing the known ones."""
  return registry.load(__name__, name, "config.method").METHOD
