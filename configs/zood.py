"""ZooD: rank a zoo's models on several training domains, ensemble the top-K with feature selection,
judge everything on an unseen domain (zoo_jax.reuse.zood).

  python -m zoo_jax.train --config=configs/mnist5k.py --workdir=/tmp/zoo_mnist5k
  python -m zoo_jax.select --config=configs/zood.py --zoo=/tmp/zoo_mnist5k --workdir=/tmp/zood

The zoo's models (trained on mnist5k) meet DomainBed's rotated digits: the training domains are the
family's domains but `heldout`, which nothing sees before the final evaluation.
"""

import ml_collections

from configs import select


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.epoch = -1  # the zoo epoch whose weights are ranked (negative counts back from the newest)
  c.seed = 0  # image subsets
  c.domains = ml_collections.ConfigDict()
  c.domains.family = "rotated_mnist5k"  # a name of zoo_jax.data.domains.FAMILIES
  c.domains.names = ml_collections.config_dict.placeholder(tuple)  # or dataset names: these instead
  c.domains.heldout = "mnist5k_rot75"  # the unseen domain, one of the family
  c.probe_size = 1000  # training images per training domain: features, scores, the heads
  c.eval_size = 500  # validation images per training domain (choosing), test images of the unseen
  c.num_models = ml_collections.config_dict.placeholder(int)  # None: every usable model
  c.top_k = 5  # models whose features the ZooD ensemble concatenates
  c.selection = ml_collections.ConfigDict()
  c.selection.enabled = True  # the variational-EM feature selection on the concatenated features
  c.selection.threshold = 0.5  # posterior inclusion probability a kept feature exceeds
  # The brute-force reference: every model fine-tuned on the union of the training domains,
  # select's recipe (configs/select.py), chosen by its validation accuracy on those domains.
  c.finetune = select.get_config().finetune
  # A seeded subset of the training domains' union (None: all of it); by default as many images
  # as the ranking reads (probe_size per training domain).
  c.finetune.train_size = 5000
  c.progress_bar = False
  return c
