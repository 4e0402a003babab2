"""Does mixing aligned zoo models generate? Interpolations between activation-aligned top models,
with and without REPAIR, against the noise baseline at equal novelty.

  PYTHONPATH=. python studies/aligned_mixing.py --zoo=/work/zoos/seed5k --out=/tmp/aligned_mixing

The top `top_fraction` of the zoo's models at its newest epoch (by validation accuracy) are
aligned to the best one by activation matching (zoo_jax.reuse.merging.align_to; with
--alignment_rounds > 1, then to the mean of the others, MergeMany-style). A draw is
(1 - t) a + t b for a random pair (a, b) of them; "repair" then rescales each hidden channel's
pre-activation to the pair's interpolated mean and standard deviation on 2,000 training images
(REPAIR, Jordan et al. 2023, `merging.repair`: the variance an average of unrelated units loses);
"layer fit" instead regresses every layer, in order, onto the pair's mixed outputs on 5,000
training images (`merging.fit_layers`, the decode_fit "layers" of zoo_jax.sample). The noise
baseline is zoo_jax.sample's B_N: a top model as stored plus Gaussian noise of `scale` times each
layer's RMS, also with and without REPAIR (to its own statistics). Every row: 32 draws, test
accuracy before any training, median `weights.novelty` against every zoo model at that epoch,
and median behavioural IoU (zoo_jax.sample.behaviour_iou). OUT/aligned_mixing.csv holds the
rows; the script prints them.
"""

import argparse
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd

from zoo_jax import sample, weights, zoo as zoo_lib
from zoo_jax.engine import grid
from zoo_jax.reuse import merging


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--zoo", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--draws", type=int, default=32)
  parser.add_argument("--top_fraction", type=float, default=0.3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--alignment_rounds", type=int, default=1)
  parser.add_argument("--mixes", default="0.2,0.25,0.3,0.4,0.5")
  parser.add_argument("--noise_scales", default="0.1,0.3,0.5,1")
  parser.add_argument(
    "--partner",
    choices=("random", "nearest"),
    default="random",
    help="b: a random other top model, or the one nearest to a in aligned weights",
  )
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)

  zoo = zoo_lib.Zoo(args.zoo)
  ids = zoo.models["model_id"].to_numpy()
  params = jax.tree.map(np.asarray, zoo.params(ids, -1))
  spec = weights.make_spec(merging.take(params, 0))
  cohort = grid.cohort_of(zoo.models.iloc[0])
  evaluate = merging.Evaluator(zoo, cohort, None, args.seed)
  stored = merging.flat(params)
  errors_zoo = ~evaluate.correct(params, "test")
  zoo_acc = float(evaluate(params, "test")[1].mean())
  top = np.argsort(-evaluate(params, "validation")[1], kind="stable")
  top = top[: int(np.ceil(args.top_fraction * len(ids)))]
  matching = ml_collections.ConfigDict(
    {
      "alignment": "activations",
      "matching_images": 1000,
      "alignment_rounds": args.alignment_rounds,
    }
  )
  aligned = merging.align_to(
    jax.tree.map(lambda a: a[top], params), 0, spec, matching, cohort, evaluate
  )
  flat_aligned = merging.flat(aligned)
  own = merging.channel_statistics(aligned, evaluate, cohort, sample.REPAIR_IMAGES)
  unflat = lambda v: jax.tree.map(np.asarray, weights.unflatten(jnp.asarray(v, jnp.float32), spec))

  rows = []

  def report(method, draws, targets=None):
    if targets is not None:
      draws = merging.repair(draws, targets, spec, evaluate, cohort, sample.REPAIR_IMAGES)
    acc = evaluate(draws, "test")[1]
    novelty = weights.novelty(merging.flat(draws), stored, ids.astype(str), spec)
    iou = sample.behaviour_iou(~evaluate.correct(draws, "test"), errors_zoo)
    rows.append(
      {
        "method": method,
        "test_acc": acc.mean(),
        "std": acc.std(),
        "novelty": np.median(novelty),
        "behaviour_iou": np.median(iou),
      }
    )
    print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)

  rng = np.random.default_rng(args.seed)
  pairs = np.stack([rng.choice(len(top), 2, replace=False) for _ in range(args.draws)])
  if args.partner == "nearest":
    distance = np.linalg.norm(flat_aligned[:, None] - flat_aligned[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    pairs[:, 1] = distance[pairs[:, 0]].argmin(1)
  for t in [float(v) for v in args.mixes.split(",") if v]:
    mix = np.zeros((args.draws, len(top)))
    mix[np.arange(args.draws), pairs[:, 0]] = 1 - t
    mix[np.arange(args.draws), pairs[:, 1]] = t
    draws = unflat(mix @ flat_aligned)
    report(f"aligned pair t={t}", draws)
    report(f"aligned pair t={t} + REPAIR", draws, [(mix @ m, mix @ s) for m, s in own])
    fitted = merging.fit_layers(draws, aligned, mix, spec, evaluate, cohort, 5000)
    report(f"aligned pair t={t} + layer fit", fitted)
  sources = rng.choice(len(top), args.draws)
  for scale in [float(v) for v in args.noise_scales.split(",") if v]:
    key = jax.random.fold_in(jax.random.key(args.seed), int(scale * 1000))
    noisy = sample.noisy_copies(key, unflat(stored[top[sources]]), scale)
    # REPAIR's targets for a noisy copy: its source's statistics (the source is stored, not
    # aligned; permuting the aligned statistics back is not needed, each channel keeps its own).
    source_stats = merging.channel_statistics(
      unflat(stored[top[sources]]), evaluate, cohort, sample.REPAIR_IMAGES
    )
    report(f"noise {scale:g}", noisy)
    report(f"noise {scale:g} + REPAIR", noisy, source_stats)
  table = pd.DataFrame(rows).assign(zoo_test_acc=zoo_acc, alignment_rounds=args.alignment_rounds)
  table.to_csv(os.path.join(args.out, "aligned_mixing.csv"), index=False)
  print(f"zoo mean test accuracy {zoo_acc:.3f} (90%: {0.9 * zoo_acc:.3f})")


if __name__ == "__main__":
  main()
