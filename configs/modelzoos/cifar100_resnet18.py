"""Model Zoos: CIFAR-100 ResNet-18 zoo (tune_zoo_cifar100_resnet18_kaiming_uniform): the CIFAR-10 ResNet-18
setting with SGD lr 0.1, batch 128, 60 epochs, 100 classes; 40,000/10,000 split, CIFAR-100 statistics
(mean 0.5071, 0.4867, 0.4408; std 0.2675, 0.2565, 0.2761; the dataset's protocol in zoo_jax.data).
OneCycleLR and RandomCrop(32, padding=4) + RandomHorizontalFlip, as configs/modelzoos/cifar10_resnet18.py.

  python -m zoo_jax.train --config=configs/modelzoos/cifar100_resnet18.py --workdir=/tmp/zoo_cifar100_resnet18
"""

import ml_collections

from configs.modelzoos import cifar10_resnet18


def get_config() -> ml_collections.ConfigDict:
  c = cifar10_resnet18.get_config()
  c.dataset.name = "cifar100"
  c.dataset.preprocess.validation_size = None
  c.dataset.preprocess.mean = None
  c.dataset.preprocess.std = None
  c.population.grid.learning_rate = (0.1,)
  c.batch_size = 128
  c.num_epochs = 60
  return c
