"""Why a hyper-representation autoencoder memorises a seed zoo: the share of a held-out
model's weights (layer-normalised, centred) that the linear span of the training states leaves
unexplained, without augmentation and with K hidden-unit permutations of every training state.

  PYTHONPATH=. python studies/weight_span.py ZOO '(3,4,5,6)'
"""

import sys, json
import numpy as np, jax, jax.numpy as jnp
from zoo_jax.encoders import properties, streaming
from zoo_jax import weights
from zoo_jax.encoders.states import load_states


def heldout_split(zoo_dir, epochs):
  """The encoder's 80/20 split by model (seed 0): (training states, held-out states at the newest
  epoch [N, n], spec, per-entry scale): each layer's pooled std over the training states, as the
  autoencoder's layer-wise normaliser."""
  states = load_states(zoo_dir, epochs)
  is_test = properties.split_by_model(states.table, 0.2, 0)
  train, test = states.rows(~is_test), states.rows(is_test)
  spec = states.spec
  std = np.sqrt(streaming.layer_variances(train.flat, spec))
  scale = np.repeat(std, [layer.size for layer in spec.layers])
  last = test.table["epoch"].to_numpy() == test.table["epoch"].max()
  return train, test.flat[last], spec, scale


def main(zoo_dir, epochs):
  train, heldout, spec, scale = heldout_split(zoo_dir, epochs)
  Xte = heldout / scale
  out = dict(
    zoo=zoo_dir, train_models=int(train.table.model_id.nunique()), train_states=len(train.flat)
  )
  for K in (0, 4, 16):
    X = [train.flat]
    for k in range(K):
      p = weights.random_permutation(
        jax.random.key(k), weights.unflatten(jnp.asarray(train.flat), spec), spec
      )
      X.append(np.asarray(weights.flatten(p, spec)[0]))
    X = np.concatenate(X) / scale
    mu = X.mean(0)
    _, S, Vt = np.linalg.svd(X - mu, full_matrices=False)
    Vt = Vt[S > S[0] * 1e-6]
    R = mu + (Xte - mu) @ Vt.T @ Vt
    out[f"perm{K}"] = dict(
      rank=len(Vt), heldout_nmse=round(float(((R - Xte) ** 2).mean() / ((Xte - mu) ** 2).mean()), 3)
    )
  print(json.dumps(out))


if __name__ == "__main__":
  main(sys.argv[1], eval(sys.argv[2]))
