"""Held-out retention of the hyperrep autoencoder along its training, one setting per run.

  PYTHONPATH=. python studies/hyperrep_curve.py ZOO NAME STEPS EVAL_EVERY [key=value ...]

key=value overrides configs/hyperrep_generative.py (dotted keys, Python literals), e.g.
hyperrep.model.bottleneck=flatten hyperrep.input_scaling=True. The zoo's models are split 80/20 (seed 0)
as zoo_jax.encode splits them, the layer variances come from the training states, and the library's
training step (hyperrep.make_train_step: augmentations, loss, Adam with the config's schedule over STEPS)
runs on random batches of the training states. Every EVAL_EVERY steps it prints one JSON line: the
last batch's reconstruction loss, and for 40 held-out and 20 training models at the newest selected
epoch the mean retention (decoded / original accuracy on the first 2,000 test images) and each layer's
normalised reconstruction error (MSE over the layer's weight variance), in spec order.
"""

import ast, json, sys, time
import numpy as np, jax, jax.numpy as jnp
from zoo_jax.encoders import properties, streaming
from zoo_jax import weights, data, models, train as train_lib
from zoo_jax.engine import population, train_config
from zoo_jax.encoders.states import load_states
from zoo_jax.encoders.methods import hyperrep
from configs import hyperrep_generative

zoo_dir, name, steps, every, *overrides = sys.argv[1:]
steps, every = int(steps), int(every)
c = hyperrep_generative.get_config()
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
h = c.hyperrep
states = load_states(zoo_dir, c.epochs)
is_test = properties.split_by_model(states.table, c.split.test_fraction, 0)
train, test = states.rows(~is_test), states.rows(is_test)
spec = train.spec
lv = jnp.asarray(streaming.layer_variances(train.flat, spec))
model = hyperrep.make_model(
  spec,
  per_layer=h.per_layer,
  layer_variance=lv if h.get("input_scaling") else None,
  **h.model.to_dict(),
)
params = hyperrep.init(jax.random.key(0), model)
print(name, "params", sum(x.size for x in jax.tree.leaves(params)), flush=True)
tx = hyperrep.make_optimizer(
  h.learning_rate, schedule=h.schedule, total_steps=steps, warmup_steps=h.warmup_steps
)
step = hyperrep.make_train_step(
  model,
  tx,
  spec=spec,
  layer_variance=lv,
  gamma=h.gamma,
  temperature=h.temperature,
  noise=h.noise,
  erase_p=h.erase_p,
  permute=h.permute,
  reduction=h.reduction,
  target=h.target,
)
opt = tx.init(params)
zc = train_config.stored_config(zoo_dir)
ds = zc.dataset
td = data.load_as_zoo(
  ds.to_dict(), "test", models.image_size(zc.model.arch)
)  # as the zoo's models saw it
if ds.eval_size:
  td = train_lib._subset(td, min(ds.eval_size, len(td)), ds.split_seed, "eval_size")
net = models.get_model(zc.model.arch, activation=zc.population.grid.activation[0])
x = population.normalize(jnp.asarray(td.images[:2000]), td.mean, td.std)
y = jnp.asarray(td.labels[:2000])
acc_one = jax.jit(lambda p: jnp.mean(jnp.argmax(net.apply({"params": p}, x), -1) == y))
embed = hyperrep.make_embed(model, spec)
decode = hyperrep.make_decode(model, spec)


def last(st, n):
  m = st.table["epoch"].to_numpy() == st.table["epoch"].max()
  return np.asarray(st.flat[m])[:n]


te, tr = last(test, 40), last(train, 20)
a_te = np.asarray(jax.lax.map(acc_one, weights.unflatten(jnp.asarray(te), spec)))
a_tr = np.asarray(jax.lax.map(acc_one, weights.unflatten(jnp.asarray(tr), spec)))


def evaluate(params):
  out = {}
  for nm, f, a0 in (("te", te, a_te), ("tr", tr, a_tr)):
    dec = decode(params, embed(params, jnp.asarray(f)))
    a1 = np.asarray(jax.lax.map(acc_one, dec))
    fl = np.asarray(weights.flatten(dec, spec)[0])
    err = ((fl - f) ** 2).mean(0)
    # per-layer normalised error
    errs = []
    off = 0
    for i, l in enumerate(spec.layers):
      n = sum(int(np.prod(p.shape)) for p in l.params)
      errs.append(float(err[off : off + n].mean() / lv[i]))
      off += n
    out[nm] = (round(float(np.mean(a1 / a0)), 3), [round(e, 3) for e in errs])
  return out


flat_train = np.asarray(train.flat)
key = jax.random.key(1)
t0 = time.time()
i = 0
bs = h.batch_size
rng = np.random.default_rng(0)
while i < steps:
  idx = rng.choice(len(flat_train), bs, replace=False)
  params, opt, m = step(params, opt, jnp.asarray(flat_train[idx]), jax.random.fold_in(key, i))
  i += 1
  if i % every == 0 or i == steps:
    r = evaluate(params)
    print(
      json.dumps(
        dict(
          name=name,
          step=i,
          s=round(time.time() - t0),
          rec=round(float(m["reconstruction"]), 4),
          heldout=r["te"],
          train=r["tr"],
        )
      ),
      flush=True,
    )
