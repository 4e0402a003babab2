"""Merging within a zoo: soups, weight-matched averages, task arithmetic, TIES, clusters, loss barriers.

python -m zoo_jax.finetune --config=configs/finetuned_zoo.py --workdir=/tmp/zoo_finetuned
python -m zoo_jax.merge --config=configs/merge.py --zoo=/tmp/zoo_finetuned --workdir=/tmp/merge_finetuned
python -m zoo_jax.train --config=configs/merge_seed_zoo.py --workdir=/tmp/zoo_seeds
python -m zoo_jax.merge --config=configs/merge.py --zoo=/tmp/zoo_seeds --workdir=/tmp/merge_seeds
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.epoch = -1  # the zoo epoch whose weights are merged
  c.select = ml_collections.ConfigDict()  # models-table filters, e.g. activation="relu"; empty: all
  c.max_models = 16  # the first N selected models
  # The files of zoo_jax/reuse/mergers/ (a new method: a new file, named here), merged in this order.
  c.methods = (
    "uniform_soup",
    "greedy_soup",
    "aligned_average",
    "clusters",
    "task_arithmetic",
    "ties",
    "glue",
  )
  # The zoo the models were fine-tuned from (task arithmetic, TIES); None: ZOO/ancestor if present.
  c.ancestor = ml_collections.config_dict.placeholder(str)
  # How hidden units are aligned before averaging models: "weights" (weight matching, data-free)
  # or "activations" (the correlation of unit outputs on `matching_images` training images; the
  # lower midpoint barriers on CNN-s, docs/using_a_zoo.md).
  c.alignment = "activations"
  c.matching_images = 500
  c.scales = (
    0.1,
    0.2,
    0.3,
    0.5,
    0.7,
    1.0,
  )  # lambda candidates of task arithmetic and TIES (by validation)
  c.ties = ml_collections.ConfigDict()
  c.ties.density = 0.2  # fraction of each task vector's entries kept (largest magnitudes)
  # Model-GLUE (the "glue" method, configs/glue.py): each cluster merged by the best of these
  # methods on validation, the clusters then integrated by a learned router and by stacking.
  c.glue = ml_collections.ConfigDict()
  c.glue.num_clusters = 4  # average-linkage clusters of raw weight distance
  c.glue.strategies = ("uniform_soup", "greedy_soup", "aligned_average", "task_arithmetic", "ties")
  # Each cluster's merge chosen on the validation images most of its models get right
  # ("competence"), or on all of them ("all").
  c.glue.choose_on = "competence"
  c.glue.router = ml_collections.ConfigDict()
  c.glue.router.steps = 500  # full-batch AdamW steps on the validation images
  c.glue.router.learning_rate = 0.01
  c.glue.router.weight_decay = 1e-3
  c.clustering = ml_collections.ConfigDict()
  c.clustering.num_clusters = 2  # average-linkage clusters of aligned weight distance
  c.interpolation = ml_collections.ConfigDict()
  c.interpolation.num_points = 11  # alphas on [0, 1] (odd: the midpoint is one of them)
  c.interpolation.num_pairs = 3  # pairs (best model, another) whose line is evaluated
  c.eval_size = 2000  # images per split for merge decisions and barriers; None: all
  c.seed = 0
  return c
