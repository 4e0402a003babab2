"""Model Zoos: CIFAR-10 ResNet-18 zoo (tune_zoo_cifar10_resnet18_kaiming_uniform): 1,000 seeds,
kaiming_uniform, SGD lr 0.05 momentum 0.9, weight decay 5e-4, batch 256, 50 epochs; 40,000/10,000
split, normalised with the CIFAR-10 statistics (125.3, 123.0, 113.9) / 255 and (63.0, 62.1, 66.7) / 255.

Not reproduced yet (zoo_jax's engine has neither): the OneCycleLR schedule (max_lr = lr, with
PyTorch's momentum cycling) and the train-time augmentation (RandomCrop(32, padding=4),
RandomHorizontalFlip). BatchNorm running variance: Flax updates it with the biased batch
variance, PyTorch with the unbiased one (a factor n/(n-1) = 256/255 on each update).

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
  c.eval_batch_size = 500
  return c
