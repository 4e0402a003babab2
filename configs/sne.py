"""SNE (Andreis et al.): pad-chunk-encode with set-to-set and set-to-vector blocks, layer
positional encodings and logit invariance, trained to predict every property at once.

Reads zoos of different architectures (CNN-s and CNN-l) in one run:

  python -m zoo_jax.encode --config=configs/sne.py --zoo=/tmp/zoo_study_fmnist --zoo=/tmp/zoo_study_mnist5k \
      --workdir=/tmp/enc_sne
"""

import ml_collections

from configs import statnn


def get_config() -> ml_collections.ConfigDict:
  c = statnn.get_config()
  c.method = "sne"
  c.predictors = ()  # SNE predicts directly (multi-task head)
  c.sne = ml_collections.ConfigDict()
  c.sne.model = ml_collections.ConfigDict()  # fields of zoo_jax.encoders.methods.sne.SNE
  # CPU-sized: the per-weight stage dominates (0.9 s per step of 64 CNN-s models on 2 busy
  # cores with these values, 2.9 s with chunk 64 / element_dim 32 / d_model 64 / 4 heads).
  c.sne.model.chunk_size = 32  # weights per chunk (a chunk never mixes layers)
  c.sne.model.element_dim = 8  # width of the per-weight features inside a chunk
  c.sne.model.d_model = 32
  c.sne.model.num_heads = 2
  c.sne.model.num_chunk_blocks = 1
  c.sne.model.num_layer_blocks = 1
  c.sne.model.pooling = "attention"  # "attention" | "mean"
  c.sne.model.head_features = (64,)
  # Where a weight sits and each model's own scale: the settings that measured best on the
  # hyperparameter zoos (docs/weight_space.md).
  c.sne.model.element_positions = True  # embed each weight's index within its chunk
  c.sne.model.chunk_positions = True  # embed each chunk's index within its layer
  # Each model's layers at their own RMS, the log-RMS embedded (encoders.methods.sne.SNE).
  c.sne.model.model_scaling = True
  # Weight of the logit-invariance penalty (0: off). 0 and 1 measured alike on the filtered mnist5k
  # hyperparameter zoo (0 is ~1.5x faster); 1 is SNE as published.
  c.sne.invariance_weight = 1.0
  # Divide each layer's weights by its std over the training states (raw weights reach |w| ~ 1e3).
  c.sne.input_scaling = True
  # The supervised multi-task training: ranked targets and BCE (Kendall tau 0.59 against 0.41 with
  # z-scores and MSE on the filtered mnist5k hyperparameter zoo).
  c.train = statnn.training(num_epochs=40, targets="rank", loss="bce")
  return c
