"""Domains: datasets of one task under different shifts, loaded one by one or as one union.

A domain is any dataset of `zoo_jax.data.DATASETS`; the shifts are derived datasets of a base
(datasets.DERIVED: BASE_rot0 ... BASE_rot75, the rotations of DomainBed's RotatedMNIST; BASE_invert;
BASE_noise). `FAMILIES` names the ready-made groups; `check` is the early check every caller shares;
`load_union` is what a zoo trained on several domains reads (config.dataset.domains, through
`data.load_as_zoo`): every domain's split concatenated, each image's domain index in `Dataset.domain`.

  python -m zoo_jax.train --config=configs/mnist5k.py --workdir=OUT \\
      --config.dataset.domains='("mnist5k_rot0","mnist5k_rot15","mnist5k_rot30")'

The domains of one family share their base's images: mnist5k_rot15's test digits are mnist5k's test
digits rotated, so a model trained on some domains never saw any test digit in any domain (DomainBed
splits MNIST's 70,000 digits between domains instead; mnist5k's 5,000 are too few to split six ways).
A colour shift is left out: a colour domain of a grayscale base has three channels, so the base's
models could not read it.
"""

from typing import Sequence

import numpy as np

from zoo_jax import data

ROTATIONS = (0, 15, 30, 45, 60, 75)  # DomainBed's RotatedMNIST angles
FAMILIES = {
  "rotated_mnist5k": tuple(f"mnist5k_rot{d}" for d in ROTATIONS),
  "shifted_mnist5k": ("mnist5k", "mnist5k_invert", "mnist5k_noise", "mnist5k_rot90"),
  "rotated_fashion_mnist": tuple(f"fashion_mnist_rot{d}" for d in ROTATIONS),
}


def family(name_or_domains: str | Sequence[str]) -> tuple[str, ...]:
  """The domains of a family name of `FAMILIES`, or the given sequence of domain names as a tuple."""
  if isinstance(name_or_domains, str):
    if name_or_domains not in FAMILIES:
      raise ValueError(
        f"Unknown domain family {name_or_domains!r}; allowed values: {sorted(FAMILIES)}, "
        "or a list of dataset names."
      )
    return FAMILIES[name_or_domains]
  return tuple(name_or_domains)


def check(domains: Sequence[str], field: str, image_shape_of: str | None = None) -> None:
  """A ValueError naming `field` unless `domains` are known, distinct datasets of one task
  (the classes and image shape of `image_shape_of`, or of the first domain)."""
  domains = tuple(domains)
  if not domains:
    raise ValueError(f"{field} is empty; name at least one dataset.")
  for name in domains:
    if name not in data.DATASETS:
      raise ValueError(f"{field} has {name!r}, unknown; allowed values: {sorted(data.DATASETS)}.")
  if len(set(domains)) != len(domains):
    raise ValueError(f"{field} names a dataset twice: {list(domains)}.")
  ref = data.DATASETS[image_shape_of or domains[0]]
  for name in domains:
    info = data.DATASETS[name]
    if (info.image_size, info.channels, info.num_classes) != (
      ref.image_size,
      ref.channels,
      ref.num_classes,
    ):
      raise ValueError(
        f"{field} has {name!r} with {info.image_size}x{info.image_size}x{info.channels} images and "
        f"{info.num_classes} classes; the others have {ref.image_size}x{ref.image_size}x"
        f"{ref.channels} and {ref.num_classes}: domains must be one task."
      )


def load_union(name: str, domains: Sequence[str], split: str, **kwargs) -> data.Dataset:
  """The `split` of every domain, concatenated in order, normalised as dataset `name` (the zoo's
  dataset); `Dataset.domain` holds each image's domain index. `kwargs` go to `data.load`."""
  check(domains, "config.dataset.domains", image_shape_of=name)
  parts = [data.load(d, split, **kwargs) for d in domains]
  protocol = data.resolve(name, kwargs.get("preprocess"), kwargs.get("image_size"))
  return data.Dataset(
    name=name,
    split=split,
    images=np.concatenate([p.images for p in parts]),
    labels=np.concatenate([p.labels for p in parts]),
    mean=protocol.mean,
    std=protocol.std,
    num_classes=protocol.num_classes,
    domain=np.concatenate([np.full(len(p), i, np.int32) for i, p in enumerate(parts)]),
  )
