"""Sample new weights from a hyper-representation, and measure whether they work.

  python -m zoo_jax.sample --config=configs/sample.py --encoder=ENCODE_WORKDIR --workdir=OUT
  python -m zoo_jax.sample --config=configs/sample_aligned.py --config.zoo=ZOO --workdir=OUT

The second form (`config.space="aligned_weights"`) needs no autoencoder: the samplers draw among
the zoo's own weights, every selected state aligned to the best one (AlignedWeights), and each
draw is fitted to the states it mixes (`config.decode_fit`: each layer regressed onto their mixed
outputs, or each unit's statistics restored, REPAIR).
What follows describes the first; the baselines, novelty and outputs are the same for both.

ENCODE_WORKDIR is the output of `zoo_jax.encode` with configs/hyperrep.py (its `encoder/`
holds the trained autoencoder, its config.json the zoo it was trained on). The zoo's
selected models (one activation: weights only make sense with their own function) at
`config.epochs` are embedded; each sampler draws `num_samples` embeddings per seed, which
are decoded to weights and handed, with the baselines, to the population engine:

  B_T  random init (the zoo's init method), trained for the same epochs
  B_F  the zoo's own source models, fine-tuned further
  B_N<scale>  the memorisation baseline: a top-`sampler.top_fraction` fitted state plus Gaussian
       noise of `scale` times each layer's RMS, one method per `config.noise_scales` entry;
       a sampler should beat it at equal novelty
  zoo  the zoo's models at the matching epoch of their original training (no run; read back)

Before sampling, the zoo's held-out models (not seen by the autoencoder) at the sampled epochs
are encoded, decoded and evaluated next to their originals (OUT/reconstruction.csv; a warning
when the decoded models keep less than MIN_RETENTION of their accuracy: a sampler cannot beat
its decoder). The samplers are fitted on the autoencoder's training models only, as in the
reference (`config.fit_on="all"`: every selected state). Every model is evaluated before
training (epoch 0) and after each of `finetune_epochs` epochs, all of a cohort in one compiled
call. OUT/run.json records the config, the encoder and what was read from the zoo
(zoo_jax.zoo.guard: a rerun resumes, computes again from a zoo that grew when config.epochs are
negative, or is refused). OUT is a zoo (zoo_jax.zoo.Zoo reads it; the models table says each model's `method` and
`sample_seed`, its `novelty`: `weights.novelty` of its starting weights against the fitted
states, ~0 for a near-copy of one of them, and its `behaviour_iou`: the largest IoU of the test
images it misclassifies with those a fitted state misclassifies, 1 for a functional copy), plus
summary.csv (method x epoch: test accuracy mean and std over seeds; the median novelty and
behavioural IoU at epoch 0), accuracy.png, and frontier.png (epoch-0 accuracy
against novelty: a method above the noise baseline's line is more accurate than perturbed copies
of the zoo's models as new as it; and against behavioural IoU). With `transfer.dataset`, the
sampled weights, B_T and B_N are also fine-tuned on that dataset, in OUT/transfer; with
`changed.activation`, every starting model (B_F too) initialises networks of that activation,
fine-tuned alike, in OUT/changed_activation. With `ensemble_size` K, summary.csv also gives each
method's ensemble accuracy at its last epoch: the first K models of each sampling seed, logits
averaged (B_F: the zoo's K best models, fine-tuned; B_T: K random inits, trained alike).
"""

if __name__ == "__main__":
  # The workdir's writer lock before the slow imports below (jax, orbax: seconds), so a second
  # run into a busy workdir is refused at once.
  from zoo_jax import cli as _cli

  _cli.lock_workdir_early()


import functools
import json
import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd
import scipy.optimize

from zoo_jax import data, errors, models, plots, samplers, train, weights, zoo as zoo_lib
from zoo_jax.engine import grid, population, train_config
from zoo_jax.zoo import guard
from zoo_jax.encoders import ENCODER_DIR
from zoo_jax.encoders.methods import hyperrep
from zoo_jax.encoders.states import ZooStates, load_states
from zoo_jax.reuse import merging, ranking

FIT_ON = ("training", "all")  # config.fit_on: the states the samplers are fitted on (fitted_mask)
SUMMARY_FILE, PLOT_FILE, SAMPLES_FILE, TRANSFER_DIR, CHANGED_DIR = (
  "summary.csv",
  "accuracy.png",
  "samples.npz",
  "transfer",
  "changed_activation",
)
RECONSTRUCTION_FILE, RECONSTRUCTION_DIR = "reconstruction.csv", "reconstruction"
FRONTIER_FILE = (
  "frontier.png"  # epoch-0 accuracy against novelty and IoU, the noise baseline as a line
)
# Everything a run writes besides its record (run.json): what a rerun on a grown zoo recomputes.
OUTPUTS = (
  SUMMARY_FILE,
  PLOT_FILE,
  FRONTIER_FILE,
  SAMPLES_FILE,
  TRANSFER_DIR,
  CHANGED_DIR,
  RECONSTRUCTION_FILE,
  RECONSTRUCTION_DIR,
  *zoo_lib.ZOO_FILES,
)
MIN_RETENTION = (
  0.8  # mean acc_decoded / acc_original under which the decoder is called unfit to sample
)
COPY_NOVELTY = (
  0.3  # median novelty under which a sampler's draws are called near-copies of zoo models
)
BASELINES = ("B_T", "B_F", "B_N")
# config.space: where the samplers draw. "latent": the autoencoder's embeddings (--encoder);
# "aligned_weights": the fitted states' own weights, every one aligned to the best by activation
# matching (no autoencoder; config.zoo), each draw fitted to the states it mixes (config.decode_fit).
SPACES = ("latent", "aligned_weights")
REPAIR_IMAGES = 2000  # training images whose unit statistics REPAIR restores
# config.decode_fit, aligned_weights: how a draw is fitted to the states it mixes (with the
# non-negative weights that rebuild it from them). "layers": every layer regressed, in order,
# onto their mixed outputs (merging.fit_layers); "repair": each unit's output statistics set to
# their mix (merging.repair); "none": the draw as it is.
DECODE_FITS = ("layers", "repair", "none")
_SETTING = ("activation", "init", "optimizer", "learning_rate", "weight_decay", "dropout")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks the fields once, early; errors name the field and the allowed values."""
  for name in config.samplers:
    if name not in samplers.SAMPLERS:
      raise ValueError(f"config.samplers has {name!r}; allowed values: {list(samplers.SAMPLERS)}.")
  for name in config.baselines:
    if name not in BASELINES:
      raise ValueError(f"config.baselines has {name!r}; allowed values: {list(BASELINES)}.")
  scales = config.get("noise_scales", ())
  if "B_N" in config.baselines and (
    not isinstance(scales, (tuple, list))
    or not scales
    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in scales)
  ):
    raise ValueError(
      f"config.noise_scales must be a non-empty tuple of positive numbers (B_N's noise, in units "
      f"of each layer's RMS), got {scales!r}."
    )
  for field, low in (("num_samples", 1), ("num_seeds", 1), ("finetune_epochs", 0)):
    if not isinstance(config[field], int) or config[field] < low:
      raise ValueError(f"config.{field} must be an integer >= {low}, got {config[field]!r}.")
  changed = config.get("changed", {}).get("activation")
  if changed is not None and changed not in models.ACTIVATIONS:
    raise ValueError(
      f"config.changed.activation is {changed!r}; allowed values: {list(models.ACTIVATIONS)}."
    )
  if not isinstance(config.get("ensemble_size", 0), int) or config.get("ensemble_size", 0) < 0:
    raise ValueError(
      f"config.ensemble_size must be an integer >= 0 (0: no ensembles), got {config.ensemble_size!r}."
    )
  if config.get("decode_fit", "repair") not in DECODE_FITS:
    raise ValueError(
      f"config.decode_fit is {config.decode_fit!r}; allowed values: {list(DECODE_FITS)}."
    )
  if config.get("space", SPACES[0]) not in SPACES:
    raise ValueError(f"config.space is {config.space!r}; allowed values: {list(SPACES)}.")
  if config.get("space", SPACES[0]) == "aligned_weights" and not config.zoo:
    raise ValueError(
      "config.space='aligned_weights' samples a zoo's own weights: set config.zoo "
      "(--config.zoo=ZOO_DIR)."
    )
  if config.get("fit_on", FIT_ON[0]) not in FIT_ON:
    raise ValueError(f"config.fit_on is {config.fit_on!r}; allowed values: {list(FIT_ON)}.")
  for field in _SETTING:
    if field not in config.finetune:
      raise ValueError(
        f"config.finetune.{field} is missing; it sets how every model is fine-tuned "
        "(None: the selected zoo models' own value)."
      )
  if config.transfer.dataset is not None and config.transfer.dataset not in data.DATASETS:
    raise ValueError(
      f"config.transfer.dataset {config.transfer.dataset!r} is unknown; allowed values: "
      f"None or {sorted(data.DATASETS)}."
    )


def _source(encoder_dir: str, record: dict, config: ml_collections.ConfigDict):
  """(autoencoder pieces, zoo, selected source rows, their flat weights) for sampling."""
  zoo_dir, encoder_config = config.zoo or record["zoos"][0], record["config"]
  model, params, spec, info = hyperrep.load(os.path.join(encoder_dir, ENCODER_DIR))
  # The encoder's own state filter, so the samplers see the states it was trained on.
  zoo, states = _selected_states(zoo_dir, config, encoder_config.get("filter", {}))
  if states.spec != spec:
    raise ValueError(
      f"The zoo {zoo_dir} has another architecture than the autoencoder was trained on."
    )
  return (model, params, spec), zoo, states, info.get("held_out_models", [])


def _selected_states(
  zoo_dir: str, config: ml_collections.ConfigDict, state_filter: dict
) -> tuple[zoo_lib.Zoo, ZooStates]:
  """The zoo and its states at config.epochs that config.select keeps (at least 2, one activation
  that config.finetune.activation allows)."""
  zoo = zoo_lib.Zoo(zoo_dir)
  if "dataset" not in zoo.config:  # a slice or an import: weights and metrics, no training run
    origin = zoo.config.get("sliced_from")
    raise errors.UsageError(
      f"The zoo {zoo_dir} holds no training config (it is "
      f"{'a slice of ' + origin if origin else 'not a train run'}): samples are evaluated and "
      "fine-tuned as its models were trained; pass the zoo they were trained in"
      f"{' (' + origin + ') and choose models with config.select' if origin else ''}."
    )
  epochs = [zoo.epochs[e] if e < 0 else e for e in config.epochs]
  states = load_states(zoo_dir, epochs, **state_filter)
  print(states.hygiene)
  keep = np.ones(len(states.table), bool)
  for field, value in config.select.items():
    if field not in states.table.columns:
      raise ValueError(
        f"config.select.{field}: not a models-table column; columns: {list(zoo.models.columns)}."
      )
    keep &= (states.table[field] == value).to_numpy()
  if keep.sum() < 2:
    raise ValueError(
      f"config.select {dict(config.select)} keeps {keep.sum()} states of {zoo_dir} at epochs "
      f"{epochs}; samplers need at least 2."
    )
  activations = set(states.table.loc[keep, "activation"])
  if config.finetune.activation is not None and activations != {config.finetune.activation}:
    raise ValueError(
      f"The selected zoo models use activations {sorted(activations)}, but "
      f"config.finetune.activation is {config.finetune.activation!r}; select models of that "
      "activation (config.select.activation), since weights only work with their own."
    )
  return zoo, states.rows(keep)


class AlignedWeights:
  """The "aligned_weights" space: the fitted states' weights with their hidden units matched to the
  best state's by activation matching (`merging.align_to`, `matching_images` training images; with
  `alignment_rounds` > 1, then to the mean of the others), so that mixing two of them mixes
  corresponding units. `embeddings` [N, n] are those weights;
  `decode` turns draws [S, n] back into params fitted to the fitted states the draw mixes, by the
  non-negative least-squares weights that rebuild the draw from them (exact for `pairs`' draws):
  each layer regressed onto their mixed outputs on `fit_images` training images
  (`merging.fit_layers`), or each hidden unit's statistics set to theirs (`merging.repair`)."""

  def __init__(
    self,
    zoo,
    flat_weights,
    scores,
    spec,
    cohort,
    matching_images: int,
    seed: int,
    alignment_rounds: int = 1,
    fit_images: int = 5000,
  ):
    self.spec, self.cohort, self.fit_images = spec, cohort, fit_images
    self.evaluate = merging.Evaluator(zoo, cohort, None, seed)
    params = jax.tree.map(np.asarray, weights.unflatten(jnp.asarray(flat_weights), spec))
    matching = ml_collections.ConfigDict(
      {
        "alignment": "activations",
        "matching_images": matching_images,
        "alignment_rounds": alignment_rounds,
      }
    )
    best = int(np.nanargmax(scores))
    self.aligned = merging.align_to(params, best, spec, matching, cohort, self.evaluate)
    self.embeddings = merging.flat(self.aligned)

  @functools.cached_property
  def statistics(self) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each hidden layer's unit statistics (`merging.channel_statistics`) of every aligned state."""
    return merging.channel_statistics(self.aligned, self.evaluate, self.cohort, REPAIR_IMAGES)

  def mixing_weights(self, draws: np.ndarray) -> np.ndarray:
    """[S, N]: each draw as a non-negative combination of the embeddings, rows summing to 1."""
    basis = self.embeddings.T.astype(np.float64)
    w = np.stack([scipy.optimize.nnls(basis, d.astype(np.float64))[0] for d in draws])
    w[w < 1e-6 * w.max(1, keepdims=True)] = 0.0  # the solver's round-off: no state of its own
    return w / np.maximum(w.sum(1, keepdims=True), 1e-12)

  def decode(self, draws: np.ndarray, fit: str) -> Any:
    """Params of draws [S, n], fitted to the states they mix (`DECODE_FITS`)."""
    params = jax.tree.map(np.asarray, weights.unflatten(jnp.asarray(draws, jnp.float32), self.spec))
    if fit == "none":
      return params
    w = self.mixing_weights(np.asarray(draws))
    if fit == "layers":
      return merging.fit_layers(
        params, self.aligned, w, self.spec, self.evaluate, self.cohort, self.fit_images
      )
    targets = [(w @ mean, w @ std) for mean, std in self.statistics]
    return merging.repair(params, targets, self.spec, self.evaluate, self.cohort, REPAIR_IMAGES)


def encoder_record(encoder_dir: str) -> dict:
  """The record of the encode run in `encoder_dir` (its config.json: config, zoos, what it read), or
  one clear error when `encoder_dir` is not the workdir of a hyperrep encode run."""
  path = os.path.join(encoder_dir, zoo_lib.CONFIG_FILE)
  if not os.path.isdir(encoder_dir):
    raise errors.UsageError(f"--encoder {encoder_dir!r} is not a folder.")
  record = zoo_lib.read_json(path) if os.path.exists(path) else {}
  if not {"config", "zoos"} <= set(record) or not os.path.isdir(
    os.path.join(encoder_dir, ENCODER_DIR)
  ):
    what = "a zoo" if os.path.exists(os.path.join(encoder_dir, zoo_lib.MODELS_FILE)) else "that"
    raise errors.UsageError(
      f"--encoder {encoder_dir!r} is {what}, not the workdir of an encode run with a trained "
      "autoencoder; make one with: python -m zoo_jax.encode --config=configs/hyperrep.py "
      "--zoo=ZOO --workdir=DIR, and pass DIR."
    )
  return record


def finetune_setting(config: ml_collections.ConfigDict, source: ZooStates) -> dict:
  """How samples and baselines are trained: config.finetune, where a field is None the selected
  zoo models' own value (the zoo's training setting, the default)."""
  setting = {}
  for field in _SETTING:
    value = config.finetune[field]
    if value is None:
      values = source.table[field].unique()
      if len(values) != 1:
        raise ValueError(
          f"config.finetune.{field} is None (the zoo's own value), but the selected models use "
          f"{sorted(values.tolist())}; set it, or select models of one value (config.select)."
        )
      value = values[0].item() if hasattr(values[0], "item") else values[0]
    setting[field] = value
  return setting


def held_out_mask(source: ZooStates, held_out: list[str]) -> np.ndarray:
  """bool [states]: the states of models the autoencoder's split kept out of its training."""
  return source.keys().isin(set(held_out)).to_numpy()


def fitted_mask(
  config: ml_collections.ConfigDict, source: ZooStates, held_out: list[str]
) -> np.ndarray:
  """bool [states]: the states the samplers are fitted on (config.fit_on). "training": the
  autoencoder's training models, as the reference fits its samplers on the AE's training set (a
  held-out model decodes worse, and reconstruction.csv checks those); "all": every selected state.
  With no held-out model among the selected states, both are every state."""
  train = ~held_out_mask(source, held_out)
  if (
    config.get("fit_on", FIT_ON[0]) == "all" or train.sum() < 2
  ):  # a config from before the field: "training"
    return np.ones(len(source.table), bool)
  return train


def check_reconstruction(
  config: ml_collections.ConfigDict,
  ae: tuple,
  zoo: zoo_lib.Zoo,
  source: ZooStates,
  held_out: list[str],
  workdir: str,
) -> pd.DataFrame:
  """Decodes the held-out source states and evaluates them beside their originals.

  The held-out models are those the autoencoder's split kept out of its training (`held_out`,
  "zoo/model_id" keys saved with the encoder); with none, every selected state is used and the
  table says so (`held_out` False). Both versions go through the zoo engine's own evaluation
  (one epoch-0 run in OUT/reconstruction). Returns the rows of reconstruction.csv:
  model_id, epoch, held_out, acc_original, acc_decoded.
  """
  model, ae_params, spec = ae
  mask = held_out_mask(source, held_out)
  is_held_out = bool(mask.any())
  if not is_held_out:
    mask = np.ones(len(source.table), bool)
  rows = source.table[mask].reset_index(drop=True)
  flat = jnp.asarray(source.flat[mask])
  decoded = hyperrep.make_decode(model, spec)(
    ae_params, hyperrep.make_embed(model, spec)(ae_params, flat)
  )
  originals = weights.unflatten(flat, spec)
  columns = ["seed", "arch", *_SETTING]
  table = grid.index_models(
    pd.concat(
      [rows[columns].assign(version="original"), rows[columns].assign(version="decoded")],
      ignore_index=True,
    )
  )
  both = jax.tree.map(
    lambda a, b: np.concatenate([np.asarray(a), np.asarray(b)]), originals, decoded
  )
  run = stored_finetune_config(zoo, num_epochs=0, progress_bar=config.progress_bar)
  result = train.train_and_evaluate(
    run,
    os.path.join(workdir, RECONSTRUCTION_DIR),
    models_table=table,
    initial_params=lambda r: jax.tree.map(lambda x: x[r["model_id"].to_numpy()], both),
  )
  acc = result.metrics.set_index("model_id")["test_acc"]
  n = len(rows)
  return pd.DataFrame(
    {
      "model_id": rows["model_id"],
      "epoch": rows["epoch"],
      "held_out": is_held_out,
      "acc_original": acc.loc[np.arange(n)].to_numpy(),
      "acc_decoded": acc.loc[np.arange(n, 2 * n)].to_numpy(),
    }
  )


def retention(reconstruction: pd.DataFrame) -> float:
  """Mean over models of acc_decoded / acc_original."""
  return float(np.mean(reconstruction["acc_decoded"] / reconstruction["acc_original"]))


def report_reconstruction(reconstruction: pd.DataFrame, path: str) -> float:
  """Writes reconstruction.csv, prints the mean retention, warns below MIN_RETENTION; returns it."""
  zoo_lib.write_table_atomic(reconstruction, path)
  kept = retention(reconstruction)
  which = (
    "held-out" if reconstruction["held_out"].all() else "training (no held-out model selected)"
  )
  print(
    f"reconstruction: {len(reconstruction)} {which} zoo states decode to a mean test accuracy of "
    f"{reconstruction['acc_decoded'].mean():.3f} against {reconstruction['acc_original'].mean():.3f} "
    f"(retention {kept:.2f}); {path}"
  )
  if kept < MIN_RETENTION:
    warnings.warn(
      f"The autoencoder keeps only {kept:.0%} of the zoo models' accuracy (< {MIN_RETENTION:.0%}): "
      "samples cannot beat their decoder. Train it longer, or on one setting's late epochs "
      "(configs/hyperrep_generative.py), before reading the sampling results."
    )
  return kept


def report_novelty(table: pd.DataFrame) -> None:
  """Prints each method's median novelty (weights.novelty of the starting weights against the
  states the samplers were fitted on), and a note when a sampler only copies them."""
  median = table.groupby("method", sort=False)["novelty"].median()
  print(
    "novelty (distance of the starting weights to the nearest fitted zoo state, in units of the zoo's own "
    "nearest-neighbour distance; median): " + ", ".join(f"{m} {v:.2f}" for m, v in median.items())
  )
  if "behaviour_iou" in table:
    iou = table.groupby("method", sort=False)["behaviour_iou"].median()
    print(
      "behavioural IoU (test images misclassified, against the most similar fitted state; 1: the same "
      "mistakes; median): " + ", ".join(f"{m} {v:.2f}" for m, v in iou.items())
    )
  copies = [m for m, v in median.items() if m not in BASELINES and v < COPY_NOVELTY]
  if copies:
    print(
      f"note: {', '.join(copies)} start below {COPY_NOVELTY} of the zoo's spacing from a model the samplers "
      "saw: near-copies of zoo models, not new ones."
    )


def behaviour_iou(errors: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """[S] the largest intersection-over-union between each model's set of misclassified images
  (errors [S, N], bool) and that of any reference model (reference [F, N]): 1 for a functional
  copy (the same mistakes), lower for a model that errs elsewhere. Two error-free models count
  as identical (1)."""
  e, r = np.asarray(errors, np.float32), np.asarray(reference, np.float32)
  inter = e @ r.T
  union = e.sum(1)[:, None] + r.sum(1)[None, :] - inter
  return np.max(np.where(union > 0, inter / np.maximum(union, 1.0), 1.0), axis=1)


def misclassified(
  rows: pd.DataFrame, params: Any, test: data.Dataset, conv_impl: str
) -> np.ndarray:
  """[len(rows), N] bool: which test images each model (a row, its weights `params` [M, ...] row
  for row) misclassifies, one forward pass per cohort."""
  _, logits = ranking.outputs_by_cohort(
    rows,
    test,
    conv_impl,
    lambda part: jax.tree.map(lambda x: np.asarray(x)[part.index.to_numpy()], params),
  )
  return np.argmax(logits, -1) != test.labels[None]


def noisy_copies(key: jax.Array, params: Any, scale: float) -> Any:
  """The memorisation baseline: each model of `params` [S, ...] plus Gaussian noise of `scale`
  times the RMS of each of its layers (leaves), so that every layer moves by the same fraction.
  Novelty (`weights.novelty`) grows with `scale`; a sampler whose draws are no more accurate
  than these at equal novelty generates nothing a perturbed copy would not. Returns numpy."""
  leaves, tree = jax.tree.flatten(params)
  noisy = []
  for leaf, leaf_key in zip(leaves, jax.random.split(key, len(leaves))):
    leaf = jnp.asarray(leaf)
    rms = jnp.sqrt(jnp.mean(leaf**2, axis=tuple(range(1, leaf.ndim)), keepdims=True))
    noisy.append(
      np.asarray(leaf + scale * rms * jax.random.normal(leaf_key, leaf.shape, leaf.dtype))
    )
  return jax.tree.unflatten(tree, noisy)


def _rows(
  method: str, num: int, seed: int, setting: dict, arch: str, first_seed: int
) -> pd.DataFrame:
  return pd.DataFrame(
    {
      "method": method,
      "sample_seed": seed,
      "seed": first_seed + np.arange(num),
      "arch": arch,
      **{k: [setting[k]] * num for k in _SETTING},
    }
  )


def sample_and_evaluate(
  config: ml_collections.ConfigDict, encoder_dir: str | None, workdir: str
) -> pd.DataFrame:
  """Draws the samples, fine-tunes them with the baselines in one zoo run, writes the summary."""
  validate_config(config)
  if encoder_dir is None and config.get("space", SPACES[0]) == "latent":
    raise errors.UsageError(
      "--encoder is required: the workdir of an encode run with configs/hyperrep.py (or sample "
      "the zoo's own aligned weights with --config=configs/sample_aligned.py --config.zoo=ZOO)."
    )
  with guard.writing(workdir):  # the lock first (the zoo run inside takes it again)
    return _sample_and_evaluate(config, encoder_dir, workdir)


def _sample_and_evaluate(
  config: ml_collections.ConfigDict, encoder_dir: str, workdir: str
) -> pd.DataFrame:
  latent = config.get("space", SPACES[0]) == "latent"
  if latent:
    encoder = encoder_record(encoder_dir)
    (model, ae_params, spec), zoo, source, held_out = _source(encoder_dir, encoder, config)
  else:  # the zoo's own weights: no autoencoder, every selected state fitted
    zoo, source = _selected_states(config.zoo, config, {})
    spec, held_out = source.spec, []
  setting = finetune_setting(config, source)
  # Inputs read and checked: the workdir is claimed (or found to be this run's, or refused).
  read = [guard.read_record(zoo, source.table)]
  run = json.loads(config.to_json())
  run.pop("progress_bar", None)
  guard.claim(
    workdir,
    {
      "command": "sample",
      "config": run,
      "encoder": (
        {"workdir": os.path.abspath(encoder_dir), "read": encoder.get("read")} if latent else None
      ),
    },
    read=read,
    follow_newest=any(e < 0 for e in config.epochs),
    outputs=OUTPUTS,
    record_file=guard.RUN_FILE,
    holds="another sampling run (another config or encoder)",
  )
  print(f"read {guard.describe(read)}")
  fitted = fitted_mask(config, source, held_out)
  scores = source.table["test_acc"].to_numpy()[fitted]
  if latent:
    reconstruction = check_reconstruction(
      config, (model, ae_params, spec), zoo, source, held_out, workdir
    )
    report_reconstruction(reconstruction, os.path.join(workdir, RECONSTRUCTION_FILE))
    z = np.asarray(hyperrep.make_embed(model, spec)(ae_params, jnp.asarray(source.flat[fitted])))
    decode_latent = hyperrep.make_decode(model, spec)
    decode = lambda drawn: jax.tree.map(np.asarray, decode_latent(ae_params, jnp.asarray(drawn)))
  else:
    space = AlignedWeights(
      zoo,
      source.flat[fitted],
      scores,
      spec,
      grid.cohort_of(source.table.iloc[0]),
      config.get("matching_images", 1000),
      config.seed,
      config.get("alignment_rounds", 1),
      config.get("fit_images", 5000),
    )
    z = space.embeddings
    decode = lambda drawn: space.decode(np.asarray(drawn), config.get("decode_fit", "repair"))
  arch = source.table["arch"].iloc[0]
  num = config.num_samples

  tables, params, draws = [], [], {}
  key = jax.random.key(config.seed)
  for seed in range(config.num_seeds):
    for i, name in enumerate(config.samplers):
      drawn = samplers.draw(
        name, jax.random.fold_in(jax.random.fold_in(key, seed), i), z, scores, num, config.sampler
      )
      draws[f"{name}/seed_{seed}"] = np.asarray(drawn)
      params.append(decode(drawn))
      tables.append(
        _rows(name, num, seed, setting, arch, first_seed=1 + 10_000 * (1 + seed) + 1000 * i)
      )
    if "B_T" in config.baselines:  # random init: params None marks "the engine's own init"
      tables.append(
        _rows("B_T", num, seed, setting, arch, first_seed=1 + 10_000 * (1 + seed) + 900)
      )
      params.append(None)
    if "B_N" in config.baselines:  # top fitted states plus noise, one method per scale
      top = samplers.top_indices(scores, config.sampler.top_fraction)
      for j, scale in enumerate(config.noise_scales):
        pick_key, noise_key = jax.random.split(
          jax.random.fold_in(jax.random.fold_in(key, seed), 1000 + j)
        )
        chosen = top[np.asarray(jax.random.choice(pick_key, len(top), (num,)))]
        fitted_flat = source.flat[np.flatnonzero(fitted)[chosen]]
        params.append(
          noisy_copies(noise_key, weights.unflatten(jnp.asarray(fitted_flat), spec), scale)
        )
        tables.append(
          _rows(
            f"B_N{scale:g}", num, seed, setting, arch, first_seed=500_001 + 10_000 * seed + 1000 * j
          )
        )
  if "B_F" in config.baselines:  # the best source models at their newest selected epoch
    newest = source.table["epoch"].to_numpy() == source.table["epoch"].max()
    accuracy = source.table["test_acc"].to_numpy()  # every selected model, held-out ones too
    best = np.argsort(-np.where(newest, accuracy, -np.inf), kind="stable")[
      : min(num, int(newest.sum()))
    ]
    tables.append(
      _rows("B_F", len(best), 0, setting, arch, first_seed=1 + 900_000).assign(
        source_model=source.table["model_id"].to_numpy()[best]
      )
    )
    params.append(jax.tree.map(np.asarray, weights.unflatten(jnp.asarray(source.flat[best]), spec)))

  table = grid.index_models(pd.concat(tables, ignore_index=True))
  starts = _stack_params(table, [len(t) for t in tables], params, zoo)
  # How far each starting model lies from the models the samplers saw (0: a copy of one of them).
  table["novelty"] = weights.novelty(
    np.asarray(weights.flatten(starts, spec)[0]),
    source.flat[fitted],
    source.keys()[fitted].to_numpy(),
    spec,
  )
  # How differently each starting model errs from the nearest fitted state (1: the same mistakes).
  test = data.load_as_zoo(zoo.config["dataset"], "test", models.image_size(arch))
  conv_impl = zoo.config.get("conv_impl", "xla")
  table["behaviour_iou"] = behaviour_iou(
    misclassified(table, starts, test, conv_impl),
    misclassified(
      source.table[fitted],
      weights.unflatten(jnp.asarray(source.flat[fitted]), spec),
      test,
      conv_impl,
    ),
  )
  report_novelty(table)
  # The zoo's embeddings and scores the samplers saw, their states ("zoo/model_id"), and every
  # draw ("<sampler>/seed_<s>").
  np.savez(
    os.path.join(workdir, SAMPLES_FILE),
    embeddings=z,
    scores=scores,
    states=source.keys()[fitted].to_numpy(str),
    **draws,
  )
  rows_of = lambda t: jax.tree.map(lambda x: x[t["model_id"].to_numpy()], starts)
  results = {
    "in_distribution": train.train_and_evaluate(
      _finetune_config(zoo, config, None),
      workdir,
      models_table=table,
      initial_params=lambda rows: rows_of(rows),
    )
  }
  if (
    config.transfer.dataset is not None
  ):  # all but B_F, whose source models were trained on the zoo's data itself
    kept = table[table["method"] != "B_F"].drop(columns=["source_model"], errors="ignore")
    source_ids = kept["model_id"].to_numpy()
    kept = grid.index_models(kept)
    results["transfer"] = train.train_and_evaluate(
      _finetune_config(zoo, config, config.transfer.dataset),
      os.path.join(workdir, TRANSFER_DIR),
      models_table=kept,
      initial_params=lambda rows: jax.tree.map(
        lambda x: x[source_ids[rows["model_id"].to_numpy()]], starts
      ),
    )
  if config.get("changed", {}).get("activation") is not None:
    # Another network: the same layers with another activation, initialised from each start.
    changed = table.drop(columns=["source_model"], errors="ignore")
    results["changed_activation"] = train.train_and_evaluate(
      _finetune_config(zoo, config, None),
      os.path.join(workdir, CHANGED_DIR),
      models_table=changed.assign(activation=config.changed.activation),
      initial_params=lambda rows: rows_of(rows),
    )
  summary = summarize(results, zoo, source, config)
  if config.get("ensemble_size", 0):
    summary = summary.merge(
      ensembles(results, config.ensemble_size), on=["setting", "method", "epoch"], how="left"
    )
  zoo_lib.write_table_atomic(summary, os.path.join(workdir, SUMMARY_FILE))
  plots.sampling_summary(summary, os.path.join(workdir, PLOT_FILE))
  plots.sampling_frontier(summary, os.path.join(workdir, FRONTIER_FILE))
  return summary


def _stack_params(
  table: pd.DataFrame, sizes: list[int], blocks: list[Any], zoo: zoo_lib.Zoo
) -> Any:
  """Starting weights of every row of `table` [M, ...], block by block (sizes[i] rows each):
  decoded samples and source models as given; None (B_T) gets the engine's own init, drawn
  from each model's seed and init method as a zoo run would."""
  filled, row = [], 0
  for size, block in zip(sizes, blocks):
    if block is None:
      rows = table.iloc[row : row + size]
      block = population.init_params(
        grid.cohort_of(rows.iloc[0]),
        rows["seed"].to_numpy(),
        rows["init"].to_numpy(),
        _input_shape(zoo),
      )
    filled.append(jax.tree.map(np.asarray, block))
    row += size
  return jax.tree.map(lambda *xs: np.concatenate(xs), *filled)


def _input_shape(zoo: zoo_lib.Zoo) -> tuple[int, int, int]:
  """(H, W, C) of the images the zoo's models read."""
  ds = zoo.config["dataset"]
  info = data.resolve(
    ds["name"], ds.get("preprocess"), models.image_size(zoo.config["model"]["arch"])
  )
  return (info.image_size, info.image_size, info.channels)


def stored_finetune_config(
  zoo: zoo_lib.Zoo, num_epochs: int, progress_bar: bool
) -> ml_collections.ConfigDict:
  """The zoo's own training config (data, batch size, engine settings), run for `num_epochs`."""
  run = train_config.stored_config(zoo.workdir)
  run.num_epochs = num_epochs
  run.progress_bar = progress_bar
  run.overwrite = False
  return run


def _finetune_config(
  zoo: zoo_lib.Zoo, config: ml_collections.ConfigDict, dataset: str | None
) -> ml_collections.ConfigDict:
  """The zoo's own training config (data, batch size), run for `finetune_epochs` epochs."""
  run = stored_finetune_config(zoo, config.finetune_epochs, config.progress_bar)
  if dataset is not None:
    run.dataset.name = dataset
    run.dataset.source = data.DATASETS[dataset].sources[0]
    run.dataset.train_size = config.transfer.train_size
  return run


def ensembles(results: dict[str, zoo_lib.Zoo], size: int) -> pd.DataFrame:
  """Per (setting, method, last epoch): the test accuracy of each sampling seed's first `size`
  models as one ensemble (logits averaged, `ranking.ensemble_accuracy`), mean and std over seeds
  (ensemble_acc, ensemble_std), and its members' mean accuracy (ensemble_members_acc)."""
  rows = []
  for setting, result in results.items():
    arch = result.models["arch"].iloc[0]
    test = data.load_as_zoo(result.config["dataset"], "test", models.image_size(arch))
    epoch = int(result.metrics["epoch"].max())
    members = result.models.groupby(["method", "sample_seed"], sort=False).head(size)
    # One forward pass for every member of every ensemble, then each ensemble's rows of it.
    _, logits = ranking.population_outputs(result, members["model_id"].to_numpy(), epoch, test)
    position = pd.Series(np.arange(len(members)), index=members.index)
    for (method, seed), group in members.groupby(["method", "sample_seed"], sort=False):
      own = logits[position[group.index].to_numpy()]
      rows.append(
        {
          "setting": setting,
          "method": method,
          "epoch": epoch,
          "acc": ranking.ensemble_accuracy(own, test.labels),
          "members": np.mean([ranking.ensemble_accuracy(z[None], test.labels) for z in own]),
        }
      )
  return (
    pd.DataFrame(rows)
    .groupby(["setting", "method", "epoch"], sort=False)
    .agg(
      ensemble_acc=("acc", "mean"),
      ensemble_std=("acc", "std"),
      ensemble_members_acc=("members", "mean"),
    )
    .reset_index()
  )


def summarize(
  results: dict[str, zoo_lib.Zoo],
  zoo: zoo_lib.Zoo,
  source: ZooStates,
  config: ml_collections.ConfigDict,
) -> pd.DataFrame:
  """Test accuracy per (setting, method, epoch): mean over each seed's models, then mean and std over seeds."""
  frames = []
  for setting, result in results.items():
    metrics = result.metrics.merge(
      result.models[["model_id", "method", "sample_seed", "novelty", "behaviour_iou"]],
      on="model_id",
    )
    frames.append(metrics.assign(setting=setting))
  # The zoo's own models at the matching epoch of their original training (no run).
  ids = np.unique(source.table["model_id"])
  own = zoo.metrics[
    zoo.metrics["model_id"].isin(ids) & (zoo.metrics["epoch"] <= config.finetune_epochs)
  ]
  frames.append(own.assign(method="zoo", sample_seed=0, setting="in_distribution"))
  table = pd.concat(frames, ignore_index=True)
  per_seed = (
    table.groupby(["setting", "method", "sample_seed", "epoch"], sort=False)["test_acc"]
    .agg(["mean", "max", "count"])
    .reset_index()
  )
  summary = (
    per_seed.groupby(["setting", "method", "epoch"], sort=False)
    .agg(
      test_acc=("mean", "mean"),
      std_over_seeds=("mean", "std"),
      best=("max", "max"),
      models=("count", "sum"),
      seeds=("mean", "count"),
    )
    .reset_index()
  )
  # The starting weights' median novelty and behavioural IoU, on the rows of epoch 0 (the zoo's
  # own models: none).
  at_start = summary["epoch"] == 0
  for column in ("novelty", "behaviour_iou"):
    median = table[table["epoch"] == 0].groupby(["setting", "method"], sort=False)[column].median()
    summary[column] = np.where(
      at_start,
      [median.get((s, m), np.nan) for s, m in zip(summary["setting"], summary["method"])],
      np.nan,
    )
  return summary


if __name__ == "__main__":
  from absl import flags
  from ml_collections import config_flags

  from zoo_jax import cli

  _CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Sampling config file.", lock_config=True
  )
  _ENCODER = flags.DEFINE_string(
    "encoder", None, "Workdir of a zoo_jax.encode run with configs/hyperrep.py."
  )
  _WORKDIR = flags.DEFINE_string("workdir", None, "Where the sampled zoo and the summary go.")
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv):
    del argv
    summary = sample_and_evaluate(_CONFIG.value, _ENCODER.value, _WORKDIR.value)
    print(summary.to_string(index=False))

  cli.run(main)
