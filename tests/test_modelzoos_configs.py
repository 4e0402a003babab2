"""configs/modelzoos: every published Model Zoos zoo as a config, with its grid, data protocol and README row."""

import glob
import importlib
import os
import re

import numpy as np
import pytest

from zoo_jax import data, train
from zoo_jax.engine import grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = sorted(
  os.path.basename(p)[:-3]
  for p in glob.glob(os.path.join(ROOT, "configs", "modelzoos", "*.py"))
  if not os.path.basename(p).startswith("_")
)

# Models per zoo, from the grids of code/zoo_generators/train_zoo_*.py.
SIZES = {
  "seed": 1000,
  "mnist_hyp": 2560,
  "fmnist_hyp": 2560,
  "usps_hyp": 2560,
  "stl10_s_hyp": 2560,
  "stl10_l_hyp": 2560,
  "cifar10_s_hyp": 1280,
  "cifar10_l_hyp": 1280,
  "svhn_hyp": 4320,
  "resnet18": 1000,
}


def _config(name):
  return importlib.import_module(f"configs.modelzoos.{name}").get_config()


def test_all_27_published_zoos_are_there():
  assert len(NAMES) == 27
  assert sum("resnet18" in n for n in NAMES) == 3 and sum(n.endswith("_seed") for n in NAMES) == 8


@pytest.mark.parametrize("name", NAMES)
def test_config_validates_and_has_the_published_size(name):
  c = _config(name)
  train.validate_config(c)
  table = grid.models_table(c.population, c.model.arch)
  key = next(k for k in SIZES if k in name) if not name.endswith("_seed") else "seed"
  assert len(table) == SIZES[key]
  seeds = table["seed"].to_numpy()
  if name.endswith("_random"):
    assert c.population.random_seeds and len(np.unique(seeds)) > len(seeds) * 0.99
    assert seeds.min() >= 0 and seeds.max() < grid.RANDOM_SEED_RANGE
    np.testing.assert_array_equal(
      seeds, grid.models_table(c.population, c.model.arch)["seed"]
    )  # reproducible
  else:
    assert set(seeds) == set(range(1, c.population.num_seeds + 1))


@pytest.mark.parametrize(
  "name,validation,shape,mean",
  [
    ("mnist_seed", 10_000, (28, 28, 1), (0.1307,)),
    ("usps_hyp_fixed", 1_291, (28, 28, 1), (0.1307,)),
    ("svhn_seed", 13_257, (28, 28, 1), (0.5,)),
    ("svhn_hyp_fixed", 13_257, (28, 28, 1), (0.5,)),  # the seed zoo's dataset.pt (see the config)
    ("cifar10_s_seed", 8_000, (28, 28, 3), (0.5,) * 3),
    ("cifar10_l_hyp_fixed", 8_000, (32, 32, 3), (0.5,) * 3),
    ("stl10_s_seed", 800, (28, 28, 3), (0.5,) * 3),
    ("stl10_l_hyp_random", 800, (32, 32, 3), (0.5,) * 3),
    ("cifar10_resnet18", 10_000, (32, 32, 3), (125.3 / 255, 123.0 / 255, 113.9 / 255)),
    ("cifar100_resnet18", 10_000, (32, 32, 3), (0.5071, 0.4867, 0.4408)),
    ("tiny_imagenet_resnet18", 0, (64, 64, 3), (0.485, 0.456, 0.406)),
  ],
)
def test_config_gives_the_zoos_data_protocol(name, validation, shape, mean):
  c = _config(name)
  size = train.models.INPUT_SIZES[c.model.arch]
  info = data.resolve(c.dataset.name, c.dataset.preprocess, size[0] if size else None)
  assert info.validation_size == validation
  assert (info.image_size, info.image_size, info.channels) == shape
  np.testing.assert_allclose(info.mean, mean)
  if c.dataset.name == "cifar10" and info.image_size == 28:
    assert info.resize == "resize"  # CIFAR-10 CNN-s: Resize((28, 28)), not a crop


def test_readme_lists_every_zoo_with_its_command():
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  for name in NAMES:
    assert re.search(rf"--config=configs/modelzoos/{name}\.py", readme), name


@pytest.mark.parametrize(
  "name,augment",
  [
    ("cifar10_resnet18", (4, True, 0.0)),  # RandomCrop(32, padding=4), RandomHorizontalFlip()
    ("cifar100_resnet18", (4, True, 0.0)),
    ("tiny_imagenet_resnet18", (0, True, 20.0)),  # RandomHorizontalFlip(), RandomRotation(20)
  ],
)
def test_resnet18_zoos_train_with_onecycle_lr_and_their_augmentation(name, augment):
  c = _config(name)
  assert c.lr_schedule == "onecycle"
  assert (
    c.dataset.augment.crop_padding,
    c.dataset.augment.horizontal_flip,
    c.dataset.augment.rotation,
  ) == augment
  assert all(
    _config(n).lr_schedule == "constant" and not _config(n).dataset.augment.horizontal_flip
    for n in ("mnist_seed", "cifar10_l_seed")
  )
