"""Sample a zoo's own weights, aligned, with no autoencoder: pair mixtures of its top models.

  python -m zoo_jax.sample --config=configs/sample_aligned.py --config.zoo=ZOO --workdir=OUT

Every selected state at config.epochs is aligned to the best one by activation matching; the
"pairs" sampler draws (1 - mix) a + mix b for random pairs of the top 30%, and each draw is then
fitted to its pair (config.decode_fit "layers": every layer, in order, regressed by least squares
onto the pair's mixed outputs on 5,000 training images; no labels, no gradient step) before it is
evaluated and fine-tuned beside the baselines (B_N, noise on the same top states, is the frontier
to beat).
"""

from configs import sample


def get_config():
  c = sample.get_config()
  c.space = "aligned_weights"
  c.fit_on = "all"  # no autoencoder, so no held-out models: every selected state
  c.samplers = ("pairs",)
  c.sampler.mix = 0.5
  c.finetune_epochs = 1
  c.num_samples = 8
  return c
