"""The edge of every command line: flags, one library call, and errors for people.

    if __name__ == "__main__":
      cli.run(main)        # main(argv) -> exit code or None, as for absl.app.run

A usage error (a bad flag or config value, a workdir held by another writer, a damaged zoo
file) prints one line, `error: <message>`, on stderr and exits with code 2; Ctrl-C prints one
line and exits with 130 (committed epochs are kept; the same command resumes). Usage errors
are `zoo_jax.errors.UsageError`, and also the ValueError and OSError that zoo_jax code raises
itself (its long-standing convention for bad input: messages that name the field or file).
The same types raised inside another library (numpy, jax, orbax) are bugs and keep their
traceback (set ZOO_JAX_TRACEBACK=1 to get the traceback of a usage error too). absl is
imported here, not by the library modules.
"""

import ast
import atexit
import contextlib
import errno
import logging
import os
import signal
import sys
import traceback
import warnings
from typing import Callable, NoReturn, Sequence

from zoo_jax import errors

USAGE_EXIT_CODE, INTERRUPTED_EXIT_CODE = 2, 130
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def is_usage_error(error: BaseException) -> bool:
  """True for errors meant for the user: UsageError, or a ValueError / OSError raised by zoo_jax code."""
  if isinstance(error, errors.UsageError):
    return True
  if not isinstance(error, (ValueError, OSError)):
    return False
  frames = traceback.extract_tb(error.__traceback__)
  return bool(frames) and os.path.abspath(frames[-1].filename).startswith(_PACKAGE_DIR + os.sep)


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(error: BaseException) -> bool:
  """True when `error`, or an error it was raised from, says the disk (or quota) is full, in
  whichever library it happened (Orbax and TensorStore wrap the OSError in their own types)."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _DISK_FULL:
      return True
    if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


def one_line(message: str) -> str:
  return " ".join(str(message).split())


def fail(message: str, code: int = USAGE_EXIT_CODE) -> NoReturn:
  print(f"error: {one_line(message)}", file=sys.stderr)
  sys.exit(code)


def _warning_line(message, category, filename, lineno, line=None) -> str:
  return f"warning: {one_line(message)}\n"


_EARLY_LOCKS = contextlib.ExitStack()  # held until the process ends


def lock_workdir_early(flag: str = "workdir") -> None:
  """Takes the writer lock of the `--workdir` in sys.argv now, before a command's slow imports.

  Importing jax and orbax takes seconds; taken first, the lock refuses a second run into a busy
  workdir at once (one line, exit code 2) even when both were started together. The library's
  own `lock.workdir_lock` then re-enters it. Does nothing when the flag is absent or the folder
  cannot be made (the command reports that itself).
  """
  from zoo_jax.zoo import lock  # light: no jax

  argv, workdir = sys.argv[1:], None
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{flag}="):
      workdir = arg.split("=", 1)[1]
    elif arg == f"--{flag}" and i + 1 < len(argv):
      workdir = argv[i + 1]
  if not workdir:
    return
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError:
    return
  try:
    _EARLY_LOCKS.enter_context(lock.workdir_lock(workdir))
  except errors.UsageError as error:
    fail(str(error))
  atexit.register(_EARLY_LOCKS.close)  # released before the interpreter tears modules down
  # Until `run` takes over, a Ctrl-C (during the imports) is one line too; nothing was written yet.
  signal.signal(signal.SIGINT, _interrupted_while_starting)


def _interrupted_while_starting(signum, frame) -> NoReturn:
  # Ends the process here rather than raising SystemExit: a signal handler can run inside a
  # callback whose exceptions Python ignores (a garbage-collection callback of jaxlib's, say),
  # and the command would then carry on. Nothing was written yet; the lock is released cleanly.
  del signum, frame
  print(
    "error: interrupted while starting; nothing was written, and the same command starts again.",
    file=sys.stderr,
    flush=True,
  )
  try:
    _EARLY_LOCKS.close()
  finally:
    os._exit(INTERRUPTED_EXIT_CODE)


def compilation_cache_dir() -> str | None:
  """Where the commands keep JAX's persistent compilation cache, or None when it is off.

  On by default, in `$XDG_CACHE_HOME/zoo_jax/jax` (`~/.cache/zoo_jax/jax`): a second run of a
  command, a resumed run or a fine-tune of the same zoo skips the XLA compiles of the first
  (benchmarks/train_command.py --warm measures it). `ZOO_JAX_COMPILATION_CACHE=off` turns it
  off, another value is the folder; JAX's own `JAX_COMPILATION_CACHE_DIR`, when set, wins. The
  cache is trusted code: keep it in a folder only you can write.
  """
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  chosen = os.environ.get("ZOO_JAX_COMPILATION_CACHE", "")
  if chosen.lower() in ("0", "off", "false", "no"):
    return None
  if chosen:
    return chosen
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "zoo_jax", "jax")


def use_compilation_cache() -> None:
  """Points JAX at `compilation_cache_dir()` (before the command's first compile)."""
  import jax

  path = compilation_cache_dir()
  if path is None or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return  # off, or JAX reads its own variable
  try:
    os.makedirs(path, mode=0o700, exist_ok=True)
  except OSError:
    return  # an unwritable home: compile as without a cache
  jax.config.update("jax_compilation_cache_dir", path)


def run(main: Callable[[list[str]], int | None]) -> NoReturn:
  """Parses flags and runs `main(argv)` (absl.app.run), with usage errors as one line, exit code 2."""
  from absl import app, flags
  from absl import logging as absl_logging

  def parse(argv: Sequence[str]) -> list[str]:
    try:
      argv = flags.FLAGS(argv)
      for name in flags.FLAGS:
        # A config file that fails to load is reported only when the config is first read
        # (ml_collections' placeholder, with _ReportError): report it now, as a flag error.
        getattr(flags.FLAGS[name].value, "_ReportError", lambda: None)()
      return argv
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as error:
      # ml_collections' config flags raise AttributeError / KeyError for an unknown field,
      # with the message quoted inside: unquote it.
      message = str(error.args[0]) if len(error.args) == 1 else str(error)
      if len(message) > 1 and message[0] == message[-1] == "'":  # a repr inside the message
        try:
          message = ast.literal_eval(message)
        except (ValueError, SyntaxError):
          pass
      fail(f"bad flag: {message} (see --helpshort)")

  def guarded(argv: list[str]) -> int | None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C is KeyboardInterrupt again
    absl_logging.set_verbosity(absl_logging.ERROR)  # orbax logs every file operation at INFO
    logging.getLogger("asyncio").setLevel(
      logging.CRITICAL
    )  # orbax's failed reads, already reported
    warnings.formatwarning = _warning_line  # a warning is one line too
    use_compilation_cache()
    try:
      return main(argv)
    except KeyboardInterrupt:
      fail(
        "interrupted; the epochs committed so far are kept, and the same command continues from them.",
        INTERRUPTED_EXIT_CODE,
      )
    except Exception as error:  # pylint: disable=broad-except
      if os.environ.get("ZOO_JAX_TRACEBACK"):
        raise
      if disk_full(error):
        fail(
          f"the disk is full ({one_line(error)[:300]}); free some space and run the same command again: "
          "committed epochs are kept, and a half-written one is discarded."
        )
      if is_usage_error(error):
        fail(str(error))
      raise

  app.run(guarded, flags_parser=parse)


def run_subcommands(
  commands: dict[str, Callable[[list[str]], int | None]], program: str
) -> NoReturn:
  """`run` for a command with subcommands: `program NAME ARGS... [--flags]` calls commands[NAME](ARGS)."""

  def main(argv: list[str]) -> int | None:
    if len(argv) < 2 or argv[1] not in commands:
      got = repr(argv[1]) if len(argv) > 1 else "none"
      raise errors.UsageError(
        f"{program} needs a subcommand, one of {sorted(commands)}; got {got}."
      )
    return commands[argv[1]](argv[2:])

  run(main)
