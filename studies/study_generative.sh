#!/usr/bin/env bash
# The generative hyper-representation study, end to end, resumable (every step is a
# zoo_jax command that resumes or says it is complete):
#   1. two single-setting seed zoos (CNN-s, tanh, 200 seeds, 10 epochs): mnist5k and Fashion-MNIST;
#   2. accuracy prediction on each (StatNN, hyperrep in the generative setting, SNE), 3 seeds,
#      the other zoo as the cross-dataset test set;
#   3. sampling from the mnist5k autoencoder: reconstruction check on held-out models, then every
#      sampler (reference KDE30 included) x 3 sampling seeds, fine-tuned with the zoo's setting,
#      against B_T and B_F; the same from the Fashion-MNIST autoencoder;
#   4. the tanh slice of the mnist5k hyperparameter zoo: autoencoder with per-model scaling, sampling.
# Usage: bash studies/study_generative.sh [OUT]   (from the repo root; OUT defaults to /tmp/study_generative)
# Hours on 2 CPU cores; minutes on an accelerator.
set -euo pipefail
out=${1:-/tmp/study_generative}
mkdir -p "$out"
py=${PYTHON:-python}
run() { echo "+ $*"; "$@"; }

run $py -m zoo_jax.train --config=configs/studies/study_seed_mnist5k.py --workdir="$out/zoo_mnist5k"
run $py -m zoo_jax.train --config=configs/studies/study_seed_fmnist.py --workdir="$out/zoo_fmnist"
for zoo in mnist5k fmnist; do
  other=$([ "$zoo" = mnist5k ] && echo fmnist || echo mnist5k)
  for method in statnn hyperrep_generative sne; do
    extra=()
    if [ "$method" = sne ]; then  # the setting that matched StatNN on the mnist5k seed zoo (docs/weight_space.md)
      extra=(--config.sne.model.element_positions=True --config.sne.model.chunk_positions=True
             --config.sne.input_scaling=True --config.train.num_epochs=80)
    fi
    run $py -m zoo_jax.encode --config=configs/$method.py --config.epochs='(6,7,8,9,10)' \
        --zoo="$out/zoo_$zoo" --zoo="$out/zoo_$other" --workdir="$out/enc_${method}_$zoo" "${extra[@]}"
  done
done
for zoo in mnist5k fmnist; do
  run $py -m zoo_jax.sample --config=configs/sample.py --encoder="$out/enc_hyperrep_generative_$zoo" \
      --workdir="$out/samples_$zoo" --config.num_seeds=3 --config.num_samples=16 --config.finetune_epochs=3 \
      --config.samplers='("kde","kde30","kde30_reference","neighbourhood","neighbourhood_umap","gan","uniform","uniform_reference")'
done
# 4. the tanh slice of the hyperparameter zoo (32 models: inits, optimisers, learning rates and weight
#    decays differ): the autoencoder with per-model scaling, then sampling, fine-tuned with one setting.
run $py -m zoo_jax.train --config=configs/studies/study_mnist5k_hyp.py --workdir="$out/zoo_hyp_tanh" \
    --config.population.grid.activation='("tanh",)'
run $py -m zoo_jax.encode --config=configs/hyperrep_generative_hyp.py --zoo="$out/zoo_hyp_tanh" \
    --workdir="$out/enc_hyperrep_generative_hyp_tanh"
run $py -m zoo_jax.sample --config=configs/sample.py --encoder="$out/enc_hyperrep_generative_hyp_tanh" \
    --workdir="$out/samples_hyp_tanh" --config.num_seeds=3 --config.num_samples=8 --config.finetune_epochs=1 \
    --config.samplers='("kde30_reference",)' --config.finetune.optimizer=adam --config.finetune.learning_rate=0.001 \
    --config.finetune.weight_decay=0.0001 --config.finetune.dropout=0.0 --config.finetune.init=kaiming_uniform

$py - "$out" <<'PY'
import os, sys
import pandas as pd
out = sys.argv[1]
for zoo in ("mnist5k", "fmnist"):
  for method in ("statnn", "hyperrep_generative", "sne"):
    path = os.path.join(out, f"enc_{method}_{zoo}", "results.csv")
    if os.path.exists(path):
      r = pd.read_csv(path)
      r = r[(r["property"] == "test_acc") & r["metric"].isin(["r2", "kendall_tau"])]
      print(f"\n{zoo} / {method}: test accuracy from weights (mean ± std over seeds)")
      print(r[["predictor", "test_set", "metric", "mean", "std"]].to_string(index=False))
for zoo in ("mnist5k", "fmnist", "hyp_tanh"):
  rec = pd.read_csv(os.path.join(out, f"samples_{zoo}", "reconstruction.csv"))
  print(f"\n{zoo} reconstruction (held-out): retention {(rec['acc_decoded'] / rec['acc_original']).mean():.3f}, "
        f"decoded {rec['acc_decoded'].mean():.3f} vs original {rec['acc_original'].mean():.3f} ({len(rec)} states)")
  s = pd.read_csv(os.path.join(out, f"samples_{zoo}", "summary.csv"))
  print(f"{zoo} sampling: mean test accuracy (± std over sampling seeds) per fine-tuning epoch")
  print(s.pivot_table(index="method", columns="epoch", values="test_acc").round(3).to_string())
  print(s.pivot_table(index="method", columns="epoch", values="std_over_seeds").round(3).to_string())
PY
