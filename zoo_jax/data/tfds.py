"""The tensorflow-datasets source: official splits as uint8 numpy arrays.

Needs the optional extra: pip install 'zoo_jax[tfds]'.

Download rule: with `data_dir=None` the dataset goes to tfds' default folder
($TFDS_DATA_DIR or ~/tensorflow_datasets) and is downloaded there if missing. An explicit
`data_dir` is read as an already prepared tfds folder and never touches the network: offline,
tfds' downloader retries each file ten times with back-off (over three minutes before it fails,
and with no timeout at all when a firewall drops packets), and leaves partial files behind.
"""

import os

import numpy as np

from zoo_jax import errors


def load(
  name: str, split: str, data_dir: str | None, *, download: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Official `split` ("train" or "test") of tfds dataset `name` as (uint8 [N,H,W,C], int labels [N]).

  Args:
    name: a tfds builder name (mnist, fashion_mnist, cifar10, svhn_cropped, stl10).
    split: "train" or "test".
    data_dir: a prepared tfds data_dir, or None for tfds' default folder.
    download: whether a missing dataset may be downloaded; None means only when `data_dir`
      is None. An already prepared dataset is reused without any network access either way.
  """
  tfds = _import_tfds()
  if download is None:
    download = data_dir is None
  where = (
    f"data_dir={data_dir!r}"
    if data_dir
    else f"the default data_dir {tfds.core.constants.DATA_DIR!r}"
  )
  # tfds.load(..., download=download) in its three steps, to tell 'not prepared' from 'download failed'.
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.DatasetNotFoundError:
    # tfds' own message lists every dataset it knows (over a thousand lines).
    raise ValueError(
      f"tensorflow-datasets {tfds.__version__} has no dataset {name!r} (source='tfds')."
    ) from None
  if download:
    try:
      builder.download_and_prepare()
    except (OSError, tfds.download.DownloadError) as e:
      raise FileNotFoundError(
        f"Dataset {name!r} (source='tfds') is not prepared in {where} and downloading it failed: {e}. "
        "Run with network access, or point data_dir at a folder where it is prepared."
      ) from e
  elif not builder.is_prepared():
    raise FileNotFoundError(
      f"Dataset {name!r} (source='tfds') is not prepared in {where}, and an explicit data_dir is never "
      "downloaded into. Prepare it once with network access (import tensorflow_datasets as tfds; "
      f"tfds.builder({name!r}, data_dir={data_dir!r}).download_and_prepare()), or pass data_dir=None "
      "to download into tfds' default folder ($TFDS_DATA_DIR or ~/tensorflow_datasets)."
    )
  dataset = builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
  images, labels = tfds.as_numpy(dataset)
  return images, labels


def _import_tfds():
  """Imports tensorflow_datasets with TensorFlow kept quiet and off the GPU (JAX owns it)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ info and warning lines
  try:
    import tensorflow_datasets as tfds  # first: it imports without TensorFlow, which takes seconds
    import tensorflow as tf
  except ImportError as e:
    raise errors.MissingDependency(
      f"config.dataset.source='tfds' needs tensorflow-datasets and tensorflow, which are not "
      f"installed ({e}). Install them with: pip install -e '.[tfds]' (in the repository), or "
      "run an offline config without them: configs/mnist5k.py (or configs/fashion_mnist.py with "
      "Debian's dataset-fashion-mnist)."
    ) from None
  try:
    # A GPU build of TF would otherwise claim GPU memory that JAX preallocates for itself.
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:
    pass  # TF was already initialised by the caller, with the devices the caller chose.
  return tfds
