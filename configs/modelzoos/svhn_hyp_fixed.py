"""Model Zoos: SVHN CNN-s hyperparameter zoo, fixed seeds (tune_zoo_svhn_hyperparameter_10_fixed_seeds):
4 activations x dropout {0, 0.3, 0.5} x 4 inits x SGD x lr {1e-2, 1e-3, 1e-4} x wd {0, 1e-3, 1e-1}
x 10 seeds = 4,320 models.

Data: the generator first loads data/SVHN/dataset.pt and only builds its own data when that file
is missing; that fallback (ToTensor, Normalize(0.1307, 0.3081), no grayscale, no crop) cannot have
made the published zoo: it calls datasets.SVHN(..., train=True), which torchvision's SVHN does
not accept (it takes split=), and its 3x32x32 images do not fit the zoo's 1-channel CNN-s
(channels_in=1, 36 features after the convolutions need 28x28). So the zoo was trained on the
dataset.pt of the seed zoo, which this config uses: grayscale, centre crop 28, (0.5, 0.5),
60,000/13,257. The fallback's normalisation is one override away:
--config.dataset.preprocess.mean='(0.1307,)' --config.dataset.preprocess.std='(0.3081,)'.

  python -m zoo_jax.train --config=configs/modelzoos/svhn_hyp_fixed.py --workdir=/tmp/zoo_svhn_hyp_fixed
"""

import ml_collections

from configs.modelzoos import svhn_seed


def get_config() -> ml_collections.ConfigDict:
  c = svhn_seed.get_config()
  c.population.num_seeds = 10
  c.population.grid.activation = ("tanh", "relu", "sigmoid", "gelu")
  c.population.grid.dropout = (0.0, 0.3, 0.5)
  c.population.grid.init = ("uniform", "normal", "kaiming_uniform", "kaiming_normal")
  c.population.grid.optimizer = ("sgd",)
  c.population.grid.learning_rate = (1e-2, 1e-3, 1e-4)
  c.population.grid.weight_decay = (0.0, 1e-3, 1e-1)
  return c
