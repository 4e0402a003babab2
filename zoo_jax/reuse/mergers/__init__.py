"""Merge methods, one file each: how zoo_jax.merge combines a zoo's selected models in weight space.

A merge method is a module of this folder, named for its file (`names()`) and selected by naming it
in the merge config's `methods` (configs/merge.py). It exposes

  merge(context: Context) -> list[Merged]

where `Context` (below) carries everything zoo_jax.merge computed once for all methods: the selected
models' weights, the same aligned to the reference model, their flat vectors, validation
accuracies, clusters, the evaluator, the ancestor and the config. Each `Merged` is one merged model:
its name (the `method` column of the merged zoo; one method may return several, e.g. one per
cluster), the positions of its ingredients in the selection, and its weights (one model's pytree).
zoo_jax.merge evaluates every returned model through the training engine and writes the tables.

A method that needs the ancestor the models were fine-tuned from sets `NEEDS_ANCESTOR = True`:
it is skipped, with one notice, when the zoo has none, or when the selection's models were
fine-tuned from different ancestors (`Context.ancestor` is None; a heterogeneous zoo).
`Context.subset` is the context of some of the models: a method may run others on parts of the
selection (glue.py chooses a method per cluster). The method's own settings are config fields it
reads from `context.config` (e.g. `ties.density`); add them to configs/merge.py and check them in
zoo_jax.merge.validate_config. Shared math lives in zoo_jax.reuse.merging, helpers
of several methods in private modules here (`_task_vectors.py`).

Adding a merge method is one new file here plus naming it in configs/merge.py's `methods`.
"""

import dataclasses
from types import ModuleType
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np

from zoo_jax import registry, weights
from zoo_jax.reuse import merging


class Merged(NamedTuple):
  """One merged model."""

  method: str  # its name in the merged zoo's `method` column, e.g. "uniform_soup", "cluster_2"
  ingredients: list[int]  # positions in the selection (Context.params) of the models merged
  params: Any  # its weights: one model's pytree of numpy arrays


@dataclasses.dataclass(frozen=True)
class Context:
  """What every merge method sees: the selection of M models, computed once."""

  config: ml_collections.ConfigDict  # the merge config (configs/merge.py)
  params: Any  # the selected models' weights [M, ...], numpy
  aligned: Any  # the same with hidden units permuted to match model `reference` [M, ...]
  flat: np.ndarray  # `params` flattened [M, n]
  validation_acc: np.ndarray  # [M] on the zoo's validation split (config.eval_size images)
  reference: int  # position of the best model by validation accuracy
  cluster: np.ndarray  # [M] cluster labels 1..k of the aligned weights (config.clustering)
  spec: weights.WeightSpec  # the architecture's weight layout (flatten / unflatten)
  evaluate: merging.Evaluator  # evaluate(params [P, ...], split) -> (loss [P], accuracy [P])
  ancestors: Any = None  # [M, ...] the model each was fine-tuned from; None: none found
  source: np.ndarray | None = None  # [M] the ancestors' ids (the models table's source_model)

  @property
  def num_models(self) -> int:
    return len(self.validation_acc)

  @property
  def ancestor(self) -> Any:
    """The one ancestor of every selected model (one pytree); None without ancestors or when they
    differ."""
    if self.ancestors is None or len(np.unique(self.source)) > 1:
      return None
    return merging.take(self.ancestors, 0)

  def subset(self, members: list[int]) -> "Context":
    """The context of the models at positions `members` (their reference: the best of them)."""
    index = np.asarray(members)
    part = lambda tree: None if tree is None else jax.tree.map(lambda x: np.asarray(x)[index], tree)
    return dataclasses.replace(
      self,
      params=part(self.params),
      aligned=part(self.aligned),
      flat=self.flat[index],
      validation_acc=self.validation_acc[index],
      reference=int(np.argmax(self.validation_acc[index])),
      cluster=self.cluster[index],
      ancestors=part(self.ancestors),
      source=part(self.source),
    )

  def validation_of(self, model: Any) -> float:
    """The validation accuracy of one model (a pytree without the [M] axis)."""
    return float(self.evaluate(merging.stack([model]), "validation")[1][0])


def names() -> tuple[str, ...]:
  """Every merge method: the modules of this folder, sorted."""
  return registry.names(__name__)


def get(name: str, field: str = "config.methods entry") -> ModuleType:
  """The module of merge method `name`; an unknown name is a ValueError naming `field` and the known ones."""
  return registry.load(__name__, name, field)


def needs_ancestor(name: str) -> bool:
  """Whether method `name` merges task vectors from the ancestor (it is skipped without one)."""
  return bool(getattr(get(name), "NEEDS_ANCESTOR", False))
