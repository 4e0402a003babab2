"""The figures the commands write: matplotlib Figures saved to a file (not pyplot: a notebook's
backend is left alone). Each takes the table the command wrote, so a notebook can redraw it.
matplotlib is imported when a figure is drawn, not with the commands."""

import numpy as np
import pandas as pd


def test_accuracy(predictions: pd.DataFrame, path: str, title: str) -> None:
  """Predicted vs true test accuracy, one panel per test set, one colour per predictor (zoo_jax.encode)."""
  from matplotlib.figure import Figure

  if "test_acc_pred" not in predictions:
    return
  sets = list(dict.fromkeys(predictions["test_set"]))
  fig = Figure(figsize=(4.2 * len(sets), 4))
  axes = fig.subplots(1, len(sets), squeeze=False)
  for ax, test_set in zip(axes[0], sets):
    part = predictions[predictions["test_set"] == test_set]
    for predictor, rows in part.groupby("predictor", sort=False):
      ax.scatter(rows["test_acc_true"], rows["test_acc_pred"], s=6, alpha=0.5, label=predictor)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(
      xlabel="true test accuracy",
      ylabel="predicted test accuracy",
      title=test_set,
      xlim=(0, 1),
      ylim=(0, 1),
    )
    ax.legend(loc="upper left", fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def sampling_summary(summary: pd.DataFrame, path: str) -> None:
  """Mean test accuracy per method against fine-tuning epochs, band: std over seeds (zoo_jax.sample)."""
  from matplotlib.figure import Figure

  settings = list(dict.fromkeys(summary["setting"]))
  fig = Figure(figsize=(5.5 * len(settings), 4))
  axes = fig.subplots(1, len(settings), squeeze=False)
  for ax, setting in zip(axes[0], settings):
    for method, rows in summary[summary["setting"] == setting].groupby("method", sort=False):
      ax.plot(rows["epoch"], rows["test_acc"], marker="o", ms=3, label=method)
      std = rows["std_over_seeds"].fillna(0)
      ax.fill_between(rows["epoch"], rows["test_acc"] - std, rows["test_acc"] + std, alpha=0.15)
    ax.set_xticks(sorted(summary["epoch"].unique()))
    ax.set(xlabel="fine-tuning epoch (0: as sampled)", ylabel="mean test accuracy", title=setting)
    ax.legend(fontsize=8)
  fig.suptitle("Sampled models against the baselines")
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def sampling_frontier(summary: pd.DataFrame, path: str) -> None:
  """Accuracy before fine-tuning against median novelty (top row) and against median behavioural
  IoU (bottom row, when the summary has it), per method and setting; the noise baseline's scales
  (methods "B_N<scale>") joined as the frontier a generator has to beat: above the line on top
  (more accurate at equal weight novelty), left of it below (errs less like the zoo at equal
  accuracy) (zoo_jax.sample)."""
  from matplotlib.figure import Figure

  start = summary[(summary["epoch"] == 0) & summary["novelty"].notna()]
  settings = list(dict.fromkeys(start["setting"])) or [None]
  measures = [("novelty", "median novelty (0: a copy of a fitted state)")]
  if "behaviour_iou" in start and start["behaviour_iou"].notna().any():
    measures.append(("behaviour_iou", "median behavioural IoU (1: a fitted state's errors)"))
  fig = Figure(figsize=(5.5 * len(settings), 4 * len(measures)))
  axes = fig.subplots(len(measures), len(settings), squeeze=False)
  for row, (column, label) in enumerate(measures):
    for ax, setting in zip(axes[row], settings):
      rows = start[start["setting"] == setting]
      noise = rows[rows["method"].str.startswith("B_N")].sort_values(column)
      if len(noise):
        ax.plot(noise[column], noise["test_acc"], "k--", marker="s", ms=4, label="noise baseline")
        for _, r in noise.iterrows():
          ax.annotate(r["method"][3:], (r[column], r["test_acc"]), fontsize=7)
      for _, r in rows[~rows["method"].str.startswith("B_N")].iterrows():
        ax.scatter(r[column], r["test_acc"], label=r["method"])
      ax.set(xlabel=label, ylabel="test accuracy at epoch 0", title=setting)
      ax.legend(fontsize=7)
  fig.suptitle("New and accurate: samples against perturbed copies")
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def merge_barriers(curves: pd.DataFrame, path: str) -> None:
  """Test loss along each pair's line, naive (dashed) and aligned (solid)."""
  from matplotlib.figure import Figure

  fig = Figure(figsize=(5, 3.5))
  ax = fig.subplots()
  for (b, alignment), curve in curves.groupby(["model_b", "alignment"], sort=False):
    ax.plot(
      curve["alpha"],
      curve["test_loss"],
      "-" if alignment == "aligned" else "--",
      label=f"{int(curve['model_a'].iloc[0])}-{b} {alignment}",
    )
  ax.set(
    xlabel="alpha (0: reference model, 1: the other)",
    ylabel="test loss",
    title="Linear interpolation",
  )
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def glue_accuracy(table: pd.DataFrame, path: str) -> None:
  """Test accuracy per domain (a heatmap row each) of the ingredients, the merges, the mixture and
  the stacking of zoo_jax.merge's Model-GLUE integration (its glue.csv)."""
  from matplotlib.figure import Figure

  columns = [c for c in table.columns if c.startswith("test_acc_")]
  values = table[columns + ["test_acc"]].to_numpy(float)
  fig = Figure(figsize=(1.3 * len(columns) + 4.5, 0.26 * len(table) + 1.4))
  ax = fig.subplots()
  image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
  ax.set_xticks(range(len(columns) + 1), [c[len("test_acc_") :] for c in columns] + ["all"])
  names = [
    f"model {i}" if k == "ingredient" else m
    for m, k, i in zip(table["method"], table["kind"], table["ingredients"])
  ]
  ax.set_yticks(range(len(table)), names)
  ax.tick_params(labelsize=7)
  for (i, j), v in np.ndenumerate(values):
    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.6 else "k")
  fig.colorbar(image, ax=ax, label="test accuracy")
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def selection_ranking(ranking: pd.DataFrame, summary: dict, path: str) -> None:
  """Each method's score against the fine-tuned accuracy, Kendall tau in the title."""
  from matplotlib.figure import Figure

  methods = list(summary["methods"])
  fig = Figure(figsize=(3.2 * len(methods), 3.2))
  axes = fig.subplots(1, len(methods), squeeze=False)[0]
  for ax, method in zip(axes, methods):
    ax.scatter(
      ranking[method],
      ranking["finetuned_acc"],
      s=10,
      c=pd.factorize(ranking["activation"])[0],
      cmap="tab10",
    )
    m = summary["methods"][method]
    ratio = (
      "free" if m["ratio_to_brute_force"] is None else f"{m['ratio_to_brute_force']:.0f}x cheaper"
    )
    ax.set_xlabel(method)
    ax.set_title(f"tau {m['kendall_tau']:.2f}, {ratio}", fontsize=9)
  axes[0].set_ylabel(f"fine-tuned test acc on {summary['target']}")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
