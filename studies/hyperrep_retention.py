"""Held-out retention of the hyperrep autoencoder on a zoo, one setting per run.

  PYTHONPATH=. python studies/hyperrep_retention.py ZOO NAME [key=value ...]

key=value overrides configs/hyperrep_generative.py (dotted keys, Python literals), e.g.
'epochs=(3,4,5,6)' hyperrep.num_steps=200 hyperrep.model.bottleneck=flatten. The zoo's models are split
80/20 (seed 0) as zoo_jax.encode splits them; the autoencoder trains on the training states; held-out
and (40) training states at the newest selected epoch are encoded, decoded and evaluated on the zoo's
test split. Prints one JSON line: retention (decoded / original accuracy) on held-out and training
states, the layer-normalised reconstruction error ("global_mean") of both, wall time.
"""

import json, sys, time, tempfile, ast
import numpy as np, jax, jax.numpy as jnp
from zoo_jax.encoders import properties
from zoo_jax import weights, data, models, train as train_lib
from zoo_jax.engine import population, train_config
from zoo_jax.encoders.states import load_states
from zoo_jax.encoders import methods
from zoo_jax.encoders.methods import hyperrep as hyperrep_method
from zoo_jax.encoders.methods import hyperrep
from configs import hyperrep_generative

zoo_dir, name, *overrides = sys.argv[1:]
c = hyperrep_generative.get_config()
c.progress_bar = False
for o in overrides:
  k, v = o.split("=", 1)
  node = c
  *path, last = k.split(".")
  for p in path:
    node = node[p]
  try:
    v = ast.literal_eval(v)
  except Exception:
    pass
  node[last] = v
t0 = time.time()
states = load_states(zoo_dir, c.epochs)
is_test = properties.split_by_model(states.table, c.split.test_fraction, 0)
train, test = states.rows(~is_test), states.rows(is_test)
tmp = tempfile.mkdtemp()
hyperrep_method.featurizer(methods.Fit(c, train, [train], 0, None, tmp))
model, params, spec, info = hyperrep.load(tmp)
hist = info["history"]
t_train = time.time() - t0

zc = train_config.stored_config(zoo_dir)
ds = zc.dataset
test_data = data.load(
  ds.name,
  "test",
  source=ds.source,
  data_dir=ds.data_dir,
  seed=ds.split_seed,
  preprocess=ds.preprocess.to_dict() if hasattr(ds, "preprocess") else None,
)
if ds.eval_size:
  test_data = train_lib._subset(
    test_data, min(ds.eval_size, len(test_data)), ds.split_seed, "eval_size"
  )
net = models.get_model(zc.model.arch, activation=zc.population.grid.activation[0])
x = population.normalize(jnp.asarray(test_data.images), test_data.mean, test_data.std)
y = jnp.asarray(test_data.labels)


@jax.jit
def acc_one(p):
  return jnp.mean(jnp.argmax(net.apply({"params": p}, x), -1) == y)


def accs(flat):
  ps = weights.unflatten(jnp.asarray(flat), spec)
  return np.asarray(jax.lax.map(acc_one, ps))


embed = hyperrep.make_embed(model, spec)
decode = hyperrep.make_decode(model, spec)


def retention(st, n=None):
  last = st.table["epoch"].to_numpy() == st.table["epoch"].max()
  flat = np.asarray(st.flat[last])[:n]
  dec = decode(params, embed(params, jnp.asarray(flat)))
  a0 = accs(flat)
  a1 = np.asarray(jax.lax.map(acc_one, dec))
  return float(np.mean(a1 / a0)), float(a0.mean()), float(a1.mean()), len(a0)


def recon(st):
  flat = jnp.asarray(np.asarray(st.flat))
  tok, _ = weights.tokenize(weights.unflatten(flat, spec), spec)
  var = jnp.asarray(info["layer_variance"], jnp.float32)
  out = model.apply(
    params, embed(params, flat), tok.layer, tok.position, method=hyperrep.HyperRep.decode
  )
  return float(
    hyperrep.reconstruction_loss(out, tok.values, tok.mask, tok.layer, var, "global_mean")
  )


r_te = retention(test)
r_tr = retention(train, 40)
print(
  json.dumps(
    dict(
      name=name,
      overrides=overrides,
      n_train_states=len(train.flat),
      n_test_states=len(test.flat),
      heldout_retention=round(r_te[0], 3),
      heldout_acc=(round(r_te[1], 3), round(r_te[2], 3)),
      train_retention=round(r_tr[0], 3),
      recon_train=round(recon(train), 4),
      recon_test=round(recon(test), 4),
      final_loss=hist[-1],
      train_s=round(t_train),
      total_s=round(time.time() - t0),
    )
  ),
  flush=True,
)
import shutil

shutil.rmtree(tmp)
