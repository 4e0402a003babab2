"""Model Zoos: Tiny-ImageNet ResNet-18 zoo (tune_zoo_tinyimagenet_resnet18_kaiming_uniform): the CIFAR-100
ResNet-18 setting (SGD lr 0.1, batch 128, 60 epochs) with 200 classes on 64x64 images; trained on the
100,000 train images, tested on the 10,000 'val' images, no validation split (validation metrics are
NaN); ImageNet statistics; OneCycleLR as configs/modelzoos/cifar10_resnet18.py; train-time
augmentation RandomHorizontalFlip + RandomRotation(20) (no crop).

Reads DIR, the unpacked tiny-imagenet-200 folder (wnids.txt, train/, val/):

  python -m zoo_jax.train --config.dataset.data_dir=DIR --config=configs/modelzoos/tiny_imagenet_resnet18.py --workdir=/tmp/zoo_tiny_imagenet_resnet18
"""

import ml_collections

from configs.modelzoos import cifar100_resnet18


def get_config() -> ml_collections.ConfigDict:
  c = cifar100_resnet18.get_config()
  c.dataset.name = "tiny_imagenet"
  c.dataset.source = "local"
  c.dataset.augment.crop_padding = 0
  c.dataset.augment.rotation = 20.0
  return c
