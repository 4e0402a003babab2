"""Converts a published zoo: `python -m zoo_jax.convert --from=modelzoos --src=DIR --workdir=OUT`.

--from is `modelzoos` (a Model Zoos experiment folder of Ray Tune trials) or `cnn_zoo` (a Small
CNN Zoo folder: weights.npy, metrics.csv.gz, layout.csv). Re-running the same command resumes
an interrupted conversion. See zoo_jax/convert/formats/modelzoos.py and cnn_zoo.py for the layouts.
"""

if __name__ == "__main__":
  # The workdir's writer lock before the slow imports below (jax, orbax: seconds).
  from zoo_jax import cli as _cli

  _cli.lock_workdir_early()

import time

import numpy as np

from zoo_jax import convert, zoo


def summary(converted: zoo.Zoo, seconds: float) -> str:
  """A short text table: models, cohorts, epochs, statuses at the last epoch, place."""
  last = converted.metrics[converted.metrics["epoch"] == converted.epochs[-1]]
  counts = last["status"].value_counts()
  acc = last["test_acc"].dropna()
  q = acc.quantile([0.0, 0.5, 1.0]).to_numpy() if len(acc) else np.full(3, np.nan)
  return "\n".join(
    [
      f"models            {len(converted.models)} in {converted.models['cohort'].nunique()} cohort(s)",
      f"epochs            {converted.epochs}",
      "last epoch        " + ", ".join(f"{k} {v}" for k, v in counts.items()),
      f"test accuracy     min {q[0]:.3f}  median {q[1]:.3f}  max {q[2]:.3f}",
      f"wall time         {seconds:.1f} s (this run)",
      f"zoo               {converted.workdir}  (zoo_jax.zoo.Zoo(path) reads it)",
    ]
  )


if __name__ == "__main__":
  from absl import flags

  from zoo_jax import cli

  _FROM = flags.DEFINE_enum(
    "from", None, sorted(convert.SOURCE_FORMATS), "Layout of the published zoo."
  )
  _SRC = flags.DEFINE_string("src", None, "Folder of the published zoo.")
  _WORKDIR = flags.DEFINE_string(
    "workdir", None, "Where the zoo_jax zoo is written (and resumed from)."
  )
  flags.mark_flags_as_required(["from", "src", "workdir"])

  def main(argv):
    del argv
    started = time.time()
    converted = convert.convert(_FROM.value, _SRC.value, _WORKDIR.value, progress_bar=True)
    print(summary(converted, time.time() - started))

  cli.run(main)
