"""NFN: a permutation-equivariant encoder over a conv/dense chain's weights (zoo_jax.encoders.methods.nfn),
trained on the properties; one architecture.

  python -m zoo_jax.encode --config=configs/nfn.py --zoo=ZOO --workdir=OUT
"""

import ml_collections

from configs import statnn


def get_config() -> ml_collections.ConfigDict:
  c = statnn.get_config()
  c.method = "nfn"
  c.predictors = ()  # trained end to end (multi-task head)
  c.nfn = ml_collections.ConfigDict()
  # Fields of zoo_jax.encoders.methods.nfn.NFN, and standardize_scale (build sets the scale fields).
  c.nfn.model = ml_collections.ConfigDict()
  c.nfn.model.channels = (16, 16, 16)
  c.nfn.model.variant = "hnp"  # "hnp" (the classes and input channels keep their index) | "np"
  c.nfn.model.model_scaling = True
  # Also embed each layer's log-RMS into its entries: better on a seed zoo, worse on the
  # hyperparameter zoos (docs/weight_space.md).
  c.nfn.model.scale_embedding = False
  # The head reads each layer's log-RMS as z-scores of the training states, beside the normalised
  # learned features: tau 0.33 -> 0.43 on the seed zoo, level on mnist5k hyp (docs/weight_space.md).
  c.nfn.model.standardize_scale = True
  c.nfn.model.readout = "mean"  # "mean" | "moments" (mean and std over each layer's neurons)
  c.nfn.model.head_features = (128,)
  # Ranked targets and BCE on a sigmoid output (the NFN papers' loss on a CDF scale: chance-level
  # models and the ones that learned weigh alike); measured best in docs/weight_space.md.
  c.train = statnn.training(num_epochs=100, targets="rank", loss="bce")
  return c
