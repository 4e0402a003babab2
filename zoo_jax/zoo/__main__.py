"""`python -m zoo_jax.zoo check|slice|export`: verify, repair, slice and export zoos."""

import sys

if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] in ("slice", "export"):
  # The destination's writer lock before the slow imports below (jax, orbax: seconds).
  from zoo_jax import cli as _cli

  _cli.lock_workdir_early("dst")

import contextlib  # noqa: E402

from absl import flags  # noqa: E402

from zoo_jax import cli, errors
from zoo_jax.zoo.checks import check
from zoo_jax.zoo.share import export, parse_epochs, parse_select, slice_zoo
from zoo_jax.zoo.reader import Zoo


def _check_command(args: list[str]) -> int:
  if len(args) != 1:
    raise errors.UsageError(
      f"usage: python -m zoo_jax.zoo check DIR [--repair]; got arguments {args}."
    )
  report = check(args[0], repair=flags.FLAGS.repair)
  print(report)
  return 0 if report.ok else 1


def _copy_args(name: str, args: list[str]) -> tuple:
  """(src, dst, model ids or None, epochs or None) of `slice` / `export` from their flags."""
  if args:
    raise errors.UsageError(
      f"usage: python -m zoo_jax.zoo {name} --src=ZOO --dst=OUT [--epochs=...] "
      f"[--select=...]; got arguments {args}."
    )
  for flag in ("src", "dst"):
    if not flags.FLAGS[flag].value:
      raise errors.UsageError(f"--{flag} is required for `{name}`.")
  src, model_ids, selection = flags.FLAGS.src, None, parse_select(flags.FLAGS.select)
  epochs = parse_epochs(flags.FLAGS.epochs)
  if selection:
    with contextlib.closing(Zoo(src)) as source:
      model_ids = source.select(**selection)
  return src, flags.FLAGS.dst, model_ids, epochs


def _slice_command(args: list[str]) -> int:
  sliced = slice_zoo(*_copy_args("slice", args))
  print(f"{sliced}  (zoo_jax.zoo.Zoo(path) reads it)")
  return 0


def _export_command(args: list[str]) -> int:
  src, dst, model_ids, epochs = _copy_args("export", args)
  paths = export(src, dst, model_ids, epochs)
  print(f"exported {len(paths)} epoch file(s) and the tables to {dst}")
  return 0


# Subcommands of `python -m zoo_jax.zoo NAME ARGS... [--flags]`: name -> function(args) -> exit code.
COMMANDS = {"check": _check_command, "slice": _slice_command, "export": _export_command}


def main() -> None:
  flags.DEFINE_bool(
    "repair", False, "check: rewrite what can be rebuilt exactly from checkpoints/."
  )
  flags.DEFINE_string("src", None, "slice, export: the zoo to read.")
  flags.DEFINE_string(
    "dst",
    None,
    "slice, export: where the new zoo or the exported files go (empty, or the "
    "same slice or export to resume).",
  )
  flags.DEFINE_string(
    "epochs",
    None,
    "slice, export: comma-separated epochs, negative from the newest (e.g. 0,5,-1); default: all.",
  )
  flags.DEFINE_string(
    "select",
    None,
    "slice, export: models, as FIELD=VALUE[|VALUE] pairs separated by commas, "
    "as Zoo.select takes them (activation=tanh,status=ok,min_test_acc=0.5,model_id=0|3); "
    "default: all.",
  )
  cli.run_subcommands(COMMANDS, "python -m zoo_jax.zoo")


if __name__ == "__main__":
  main()
