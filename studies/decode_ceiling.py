"""Decoding ceiling of a seed zoo, one run:

  PYTHONPATH=. python studies/decode_ceiling.py ZOO "(3,4,5,6)"

Linear ceiling: how much of a held-out model the span of the training states explains, and what
accuracy a held-out model keeps when projected onto the top-k principal directions of the training
states (layer-normalised), or perturbed by noise of a given normalised MSE."""

import sys, json
import numpy as np, jax, jax.numpy as jnp
from zoo_jax import data, models, weights
from zoo_jax.engine import population, train_config
from weight_span import heldout_split  # studies/: the same split and normaliser

zoo_dir = sys.argv[1]
epochs = eval(sys.argv[2])
train, heldout, spec, scale = heldout_split(zoo_dir, epochs)
Xtr = train.flat / scale
Xte = heldout / scale
mu = Xtr.mean(0)
U, S, Vt = np.linalg.svd(Xtr - mu, full_matrices=False)
zc = train_config.stored_config(zoo_dir)
ds = zc.dataset
td = data.load(ds.name, "test", source=ds.source, data_dir=ds.data_dir, seed=ds.split_seed)
net = models.get_model(zc.model.arch, activation=zc.population.grid.activation[0])
x = population.normalize(jnp.asarray(td.images), td.mean, td.std)
y = jnp.asarray(td.labels)
acc_one = jax.jit(lambda p: jnp.mean(jnp.argmax(net.apply({"params": p}, x), -1) == y))
accs = lambda X: np.asarray(
  jax.lax.map(acc_one, weights.unflatten(jnp.asarray((X * scale).astype(np.float32)), spec))
)
a0 = accs(Xte)
out = dict(n_train=len(Xtr), n_test=len(Xte), acc_original=float(a0.mean()))
for k in (8, 32, 64, 128, len(S)):
  V = Vt[:k]
  R = mu + (Xte - mu) @ V.T @ V
  nmse = float(((R - Xte) ** 2).mean())
  out[f"pca{k}"] = dict(nmse=round(nmse, 3), retention=round(float((accs(R) / a0).mean()), 3))
rng = np.random.default_rng(0)
for s2 in (0.01, 0.03, 0.1, 0.3):
  R = Xte + rng.normal(size=Xte.shape) * np.sqrt(s2)
  out[f"noise_nmse{s2}"] = round(float((accs(R) / a0).mean()), 3)
out["mean_model_retention"] = round(float((accs(np.broadcast_to(mu, Xte.shape)) / a0).mean()), 3)
print(json.dumps(out))
