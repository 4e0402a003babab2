"""Model Zoos: CIFAR-10 ResNet-18 zoo (tune_zoo_cifar10_resnet18_kaiming_uniform): 1,000 seeds,
kaiming_uniform, SGD lr 0.05 momentum 0.9, weight decay 5e-4, batch 256, 50 epochs; 40,000/10,000
split, normalised with the CIFAR-10 statistics (125.3, 123.0, 113.9) / 255 and (63.0, 62.1, 66.7) / 255.

The OneCycleLR schedule (max_lr = lr over the 50 epochs, PyTorch's defaults: the momentum cycles
0.95 -> 0.85 -> 0.95 and replaces SGD's 0.9, as PyTorch's scheduler does) and the train-time
augmentation RandomCrop(32, padding=4) + RandomHorizontalFlip, drawn per model from its seed.
BatchNorm's running variance is updated as PyTorch does (unbiased; zoo_jax/models/resnet.py).
Departure: the last incomplete batch of an epoch is dropped (156 steps, PyTorch's loader runs 157),
so the schedule spans 156 x 50 steps.

  python -m zoo_jax.train --config=configs/modelzoos/cifar10_resnet18.py --workdir=/tmp/zoo_cifar10_resnet18
"""

import ml_collections

from configs import cifar10


def get_config() -> ml_collections.ConfigDict:
  c = cifar10.get_config()
  c.model.arch = "resnet18"
  c.dataset.preprocess.validation_size = 10_000
  c.dataset.preprocess.mean = tuple(v / 255 for v in (125.3, 123.0, 113.9))
  c.dataset.preprocess.std = tuple(v / 255 for v in (63.0, 62.1, 66.7))
  c.population.grid.activation = ("relu",)
  c.population.grid.init = ("kaiming_uniform",)
  c.population.grid.optimizer = ("sgd",)
  c.population.grid.learning_rate = (0.05,)
  c.population.grid.weight_decay = (5e-4,)
  c.batch_size = 256
  c.lr_schedule = "onecycle"
  c.dataset.augment.crop_padding = 4
  c.dataset.augment.horizontal_flip = True
  c.eval_batch_size = 500
  return c
