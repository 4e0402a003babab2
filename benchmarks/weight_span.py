"""Why a hyper-representation autoencoder memorises a seed zoo (issue 14): the share of a held-out
model's weights (layer-normalised, centred) that the linear span of the training states leaves
unexplained, without augmentation and with K hidden-unit permutations of every training state.

  PYTHONPATH=. python benchmarks/weight_span.py ZOO '(3,4,5,6)'
"""
import sys, json
import numpy as np, jax, jax.numpy as jnp
from zoo_jax import properties, weights
from zoo_jax.states import load_states
zoo_dir, epochs = sys.argv[1], eval(sys.argv[2])
states = load_states(zoo_dir, epochs)
is_test = properties.split_by_model(states.table, 0.2, 0)
train, test = states.rows(~is_test), states.rows(is_test)
spec = states.spec
sizes = [sum(p.size for p in l.params) for l in spec.layers]
starts = np.cumsum([0] + sizes)
scale = np.concatenate([np.full(s, train.flat[:, a:b].std()) for s, a, b in zip(sizes, starts[:-1], starts[1:])])
last = test.table["epoch"].to_numpy() == test.table["epoch"].max()
Xte = test.flat[last] / scale
out = dict(zoo=zoo_dir, train_models=int(train.table.model_id.nunique()), train_states=len(train.flat))
for K in (0, 4, 16):
  X = [train.flat]
  for k in range(K):
    p = weights.random_permutation(jax.random.key(k), weights.unflatten(jnp.asarray(train.flat), spec), spec)
    X.append(np.asarray(weights.flatten(p, spec)[0]))
  X = np.concatenate(X) / scale
  mu = X.mean(0)
  _, S, Vt = np.linalg.svd(X - mu, full_matrices=False)
  Vt = Vt[S > S[0] * 1e-6]
  R = mu + (Xte - mu) @ Vt.T @ Vt
  out[f"perm{K}"] = dict(rank=len(Vt), heldout_nmse=round(float(((R - Xte) ** 2).mean() / ((Xte - mu) ** 2).mean()), 3))
print(json.dumps(out))
