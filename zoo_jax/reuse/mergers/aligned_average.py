"""Aligned average: every model aligned to the reference (the best by validation), then averaged; the
merge of independently seeded models (Ainsworth et al., 2023). The alignment is `config.alignment`:
"weights" (weight matching) or "activations" (unit outputs matched), zoo_jax.reuse.merging.align_to."""

from zoo_jax.reuse import merging
from zoo_jax.reuse.mergers import Context, Merged


def merge(context: Context) -> list[Merged]:
  every = list(range(context.num_models))
  return [Merged("aligned_average", every, merging.mean(context.aligned, every))]
