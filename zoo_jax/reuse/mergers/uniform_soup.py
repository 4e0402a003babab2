"""Uniform soup (Wortsman et al., 2022): the plain average of every selected model."""

from zoo_jax.reuse import merging
from zoo_jax.reuse.mergers import Context, Merged


def merge(context: Context) -> list[Merged]:
  every = list(range(context.num_models))
  return [Merged("uniform_soup", every, merging.mean(context.params, every))]
