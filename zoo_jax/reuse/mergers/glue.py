"""Model-GLUE's merging step (Zhao et al., 2024): merge only what is close, each cluster its own way.

The selection is clustered by the distance of its raw weights (`config.glue.num_clusters` clusters,
average linkage; Model-GLUE clusters by weight similarity. Fine-tunes of one ancestor share its
units' order; activation matching, which the `clusters` method's distance uses, can permute a
fine-tune of another domain away from its siblings). For each cluster, every merge method of
`config.glue.strategies` is run on the cluster's models alone (`Context.subset`; task arithmetic
and TIES only where the cluster's models share one ancestor), and the candidate with the best
validation accuracy is kept (`config.glue.choose_on`: "competence", on the validation images most of
the cluster's own models classify correctly, so that a cluster of specialists stays one; "all": on
every validation image, Model-GLUE's choice by average benchmark score): one merged model `glue_<cluster>_<method>` per cluster (a cluster of one
model keeps it, `glue_<cluster>_single`). zoo_jax.merge then integrates these clusters without
merging them further: a learned router over them and stacking (zoo_jax.reuse.mixture).
"""

import numpy as np

from zoo_jax.reuse import merging
from zoo_jax.reuse.mergers import Context, Merged, get, needs_ancestor

PREFIX = "glue_"  # the `method` of every merged model this file returns starts with it


def merge(context: Context) -> list[Merged]:
  out = []
  cluster = merging.cluster(context.flat, context.config.glue.num_clusters)
  competence = context.config.glue.choose_on == "competence"
  # Which validation images each selected model gets right: one forward pass for every cluster.
  correct = context.evaluate.correct(context.params, "validation") if competence else None
  for c in np.unique(cluster):
    members = [int(i) for i in np.flatnonzero(cluster == c)]
    if len(members) == 1:
      out.append(Merged(f"{PREFIX}{c}_single", members, merging.take(context.params, members[0])))
      continue
    part = context.subset(members)
    candidates = []  # (strategy, merged model)
    for strategy in context.config.glue.strategies:
      if needs_ancestor(strategy) and part.ancestor is None:
        continue
      candidates += [(strategy, m) for m in get(strategy, "config.glue.strategies").merge(part)]
    stacked = merging.stack([m.params for _, m in candidates])
    if competence:
      # The validation images most of the cluster's own models get right: a merge that keeps the
      # cluster's competence, not one that drifts back toward what every model knows.
      mask = correct[members].mean(0) > 0.5
      accuracy = context.evaluate.correct(stacked, "validation")[:, mask].mean(1)
    else:
      accuracy = context.evaluate(stacked, "validation")[1]
    strategy, best = candidates[int(np.argmax(accuracy))]
    out.append(
      Merged(f"{PREFIX}{c}_{strategy}", [members[i] for i in best.ingredients], best.params)
    )
  return out
