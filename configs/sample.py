"""Sample models from a trained hyper-representation and evaluate them against the baselines.

python -m zoo_jax.encode --config=configs/hyperrep.py --zoo=/tmp/zoo_study_fmnist --workdir=/tmp/enc_hyperrep
python -m zoo_jax.sample --config=configs/sample.py --encoder=/tmp/enc_hyperrep --workdir=/tmp/samples
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # None: the (first) zoo the autoencoder was trained on.
  c.zoo = ml_collections.config_dict.placeholder(str)
  # Where the samplers draw: "latent" (the autoencoder's embeddings) or "aligned_weights" (the
  # zoo's own weights aligned to its best model; configs/sample_aligned.py).
  c.space = "latent"
  # aligned_weights: how each draw is fitted to the states it mixes: "layers" (every layer
  # regressed onto their mixed outputs, closed form, no labels), "repair" (each unit's output
  # statistics restored, REPAIR) or "none".
  c.decode_fit = "layers"
  c.fit_images = 5000  # aligned_weights, "layers": the training images the fit regresses on
  c.matching_images = 1000  # aligned_weights: training images of the activation matching
  # aligned_weights: 1 aligns every state to the best one; each further round matches every state
  # again to the mean unit outputs of the others (MergeMany), so that any pair corresponds.
  c.alignment_rounds = 1
  c.epochs = (-1,)  # stored epochs whose states are embedded (negative: from the newest)
  # Zoo models the samplers see (models-table columns -> value); must share the fine-tuning activation.
  c.select = ml_collections.ConfigDict({"activation": "tanh"})
  # zoo_jax.samplers.SAMPLERS; also "neighbourhood_umap" (the reference's UMAP map, slow to start)
  # and "uniform_reference" (U(-1, 1)^D).
  # The states the samplers are fitted on: "training" (the autoencoder's training models, as the
  # reference; its held-out models are the reconstruction check's) or "all" the selected states.
  c.fit_on = "training"
  c.samplers = ("kde", "kde30", "kde30_reference", "neighbourhood", "gan", "uniform")
  # B_T: random init trained alike; B_F: the zoo's best models fine-tuned; B_N: the memorisation
  # baseline, top fitted states plus noise at each of noise_scales (x each layer's RMS).
  c.baselines = ("B_T", "B_F", "B_N")
  c.noise_scales = (0.1, 0.3, 1.0)
  c.num_samples = 16  # per sampler and seed
  c.num_seeds = 3  # sampling seeds; the summary gives mean and std over them
  c.seed = 0
  c.sampler = ml_collections.ConfigDict()  # zoo_jax.samplers.draw's config
  c.sampler.bandwidth = 0.002  # per-dimension KDE bandwidth (published)
  c.sampler.top_fraction = 0.3  # S_KDE30 and the neighbourhood's "good models"
  c.sampler.mix = 0.3  # "pairs": (1 - mix) a + mix b of two top models
  c.sampler.dims = 3  # the neighbourhood map's dimensions
  c.sampler.gan_size = "small"  # zoo_jax.samplers.gan.GAN_SIZES
  c.sampler.umap_neighbors = (
    15  # the neighbourhood_umap map (published: 15 neighbours, min_dist 0.01)
  )
  c.sampler.umap_min_dist = 0.01
  c.finetune_epochs = 5  # k; the published protocol goes up to 15
  # How every model (samples and baselines) is trained; None: the selected zoo models' own value,
  # so by default samples are fine-tuned with the zoo's training setting (an error if they differ).
  c.finetune = ml_collections.ConfigDict()
  c.finetune.activation = ml_collections.config_dict.placeholder(str)
  c.finetune.init = ml_collections.config_dict.placeholder(str)  # B_T's init
  c.finetune.optimizer = ml_collections.config_dict.placeholder(str)
  c.finetune.learning_rate = ml_collections.config_dict.placeholder(float)
  c.finetune.weight_decay = ml_collections.config_dict.placeholder(float)
  c.finetune.dropout = ml_collections.config_dict.placeholder(float)
  c.transfer = ml_collections.ConfigDict()
  # Another dataset to fine-tune the samples (and B_T) on, e.g. "mnist5k"; None: no transfer run.
  c.transfer.dataset = ml_collections.config_dict.placeholder(str)
  c.transfer.train_size = ml_collections.config_dict.placeholder(int)
  # Another activation for the same layers, initialised from every starting model and fine-tuned
  # alike (OUT/changed_activation), e.g. "relu"; None: no such run.
  c.changed = ml_collections.ConfigDict()
  c.changed.activation = ml_collections.config_dict.placeholder(str)
  c.ensemble_size = 5  # each method's first K models per seed as one ensemble (0: none)
  c.progress_bar = True
  return c
