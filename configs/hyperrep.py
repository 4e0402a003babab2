"""Hyper-representations (Schürholt et al., 2021/2022): a transformer autoencoder over neuron
tokens, trained with layer-wise normalised reconstruction + NT-Xent; its embeddings are
probed for every property (ridge and an MLP), and it decodes embeddings back to weights
(the encoder zoo_jax.sample draws from).

This is the CPU-sized variant; the published one is 4 blocks, 4 heads, d_model 512,
latent 700, batch 500 (set c.hyperrep.model accordingly on an accelerator).

  python -m zoo_jax.encode --config=configs/hyperrep.py --zoo=/tmp/zoo_study_fmnist --workdir=/tmp/enc_hyperrep
"""

import ml_collections

from configs import statnn


def get_config() -> ml_collections.ConfigDict:
  c = statnn.get_config()
  c.method = "hyperrep"
  c.predictors = ("ridge", "mlp")
  c.hyperrep = ml_collections.ConfigDict()
  c.hyperrep.model = (
    ml_collections.ConfigDict()
  )  # fields of zoo_jax.encoders.methods.hyperrep.HyperRep
  c.hyperrep.model.d_model = 64
  c.hyperrep.model.num_heads = 4
  c.hyperrep.model.num_blocks = 2
  c.hyperrep.model.latent_dim = 64
  # Token width; None: the longest unit (fan_in + 1). Narrower splits long units into several tokens
  # (weights.tokens.pieces), so a token fits in d_model with room to spare.
  c.hyperrep.model.token_dim = ml_collections.config_dict.placeholder(int)
  # "token": z from a compression token (at most d_model numbers); "flatten": every token's output,
  # one linear map to latent_dim (the reference's 2022 default; what decoding unseen models needs).
  c.hyperrep.model.bottleneck = "token"
  # Each model's layers enter at their own unit RMS (instead of input_scaling's zoo-wide scale), the
  # log-RMS joins the latent, and the loss weighs each model's layers by their own variance: for zoos
  # whose models' weight scales differ by far more than one layer-wise normaliser evens out (mixed
  # inits). Needs per_layer.
  c.hyperrep.model.model_scaling = False
  c.hyperrep.learning_rate = 1e-3  # published: 1e-4 with the large model
  # loss = gamma * contrastive + (1 - gamma) * reconstruction. Published: 0.5; at this size the
  # contrastive term slows reconstruction, and decoded (sampled) models need a good one.
  c.hyperrep.gamma = 0.1
  # Views are hidden-unit permutations of the model (published). With a CPU-sized model and
  # training, permuted views left the reconstruction at chance (measured), so off here.
  c.hyperrep.permute = False
  c.hyperrep.temperature = 0.1  # NT-Xent
  c.hyperrep.noise = 0.01  # additive noise on the augmented views
  c.hyperrep.erase_p = 0.5  # probability of random erasing per view
  # The reconstruction target: "clean" (the permuted model, denoising) or "view" (with the view's
  # noise, as the reference reconstructs its augmented input: new targets around every model).
  c.hyperrep.target = "clean"
  c.hyperrep.num_epochs = 30
  c.hyperrep.batch_size = 64
  # None: num_epochs epochs; N: a budget of N optimiser steps (epochs = ceil(N / steps per epoch)).
  c.hyperrep.num_steps = ml_collections.config_dict.placeholder(int)
  c.hyperrep.schedule = "constant"  # "constant" | "cosine" (linear warmup, then cosine decay to 0)
  c.hyperrep.warmup_steps = 0
  # A separate token embedder and output head per layer (the reference code) instead of one shared.
  c.hyperrep.per_layer = False
  # Each layer's tokens enter divided by the layer's weight std over the training states (and the
  # decoded ones leave multiplied by it), so a layer of small weights (a wide fan-in) is not drowned
  # by the layer and position embeddings.
  c.hyperrep.input_scaling = False
  # "layer_mean" (each layer's normalised error weighs alike) | "global_mean" (the reference code).
  c.hyperrep.reduction = "layer_mean"
  # Zoos larger than memory: weights stay on disk and are read in blocks into a shuffle buffer of
  # stream_buffer_mb MB (zoo_jax.encoders.streaming). A buffer holding every state draws the in-memory batches.
  c.stream = False
  c.stream_buffer_mb = 64.0
  return c
