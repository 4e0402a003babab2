"""Cluster averages (Model-GLUE's first step: merge only what is close): the aligned average within
each cluster of a hierarchical clustering by aligned weight distance (`config.clustering`), one
merged model `cluster_<c>` per cluster of two or more models."""

import numpy as np

from zoo_jax.reuse import merging
from zoo_jax.reuse.mergers import Context, Merged


def merge(context: Context) -> list[Merged]:
  out = []
  for c in np.unique(context.cluster):
    members = [int(i) for i in np.flatnonzero(context.cluster == c)]
    if len(members) > 1:
      out.append(Merged(f"cluster_{c}", members, merging.mean(context.aligned, members)))
  return out
