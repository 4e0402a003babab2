"""Model-GLUE on a heterogeneous zoo: cluster, merge each cluster its best way, integrate the clusters.

  python -m zoo_jax.finetune --config=configs/glue_zoo.py --workdir=/tmp/zoo_glue
  python -m zoo_jax.merge --config=configs/glue.py --zoo=/tmp/zoo_glue --workdir=/tmp/glue

The zoo's models (fine-tunes of several ancestors on several domains) are clustered by weight
distance; each cluster is merged by whichever of `glue.strategies` scores best on the validation
images (all domains); the merged clusters are then integrated by a learned router (a model-level
mixture) and by stacking. OUT/glue.csv scores every ingredient, merge, the mixture and the stacking
on the same test images, per domain; OUT/routing.csv is where the router sends each domain;
OUT/merge_summary.json's "glue" has the headline numbers.
"""

import ml_collections

from configs import merge


def get_config() -> ml_collections.ConfigDict:
  c = merge.get_config()
  c.max_models = 64
  c.glue.num_clusters = 8
  c.interpolation.num_pairs = 1
  c.eval_size = None  # every validation and test image of every domain
  return c
