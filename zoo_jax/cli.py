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
import difflib
import errno
import importlib.util
import logging
import os
import re
import signal
import sys
import threading
import traceback
import warnings
from typing import Any, Callable, NoReturn, Sequence

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


def _where(error: BaseException) -> str:
  """' (writing PATH)' for the first file path an error names (a library's message), or ''."""
  match = re.search(r"""["'](/[^"']+)["']""", str(error))
  return f" (writing {match.group(1)})" if match else ""


def _quiet_hook(args) -> None:
  """Drops a library thread's traceback; the command's own error line says what failed."""
  del args


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
  made = not os.path.exists(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError:
    return
  if (
    made
  ):  # a run that fails before writing anything leaves no empty workdir (after the lock's release)
    _EARLY_LOCKS.callback(_remove_if_unused, workdir)
  try:
    _EARLY_LOCKS.enter_context(lock.workdir_lock(workdir))
  except errors.UsageError as error:
    fail(str(error))
  atexit.register(_EARLY_LOCKS.close)  # released before the interpreter tears modules down
  # Until `run` takes over, a Ctrl-C (during the imports) is one line too; nothing was written yet.
  signal.signal(signal.SIGINT, _interrupted_while_starting)


def _remove_if_unused(workdir: str) -> None:
  from zoo_jax.zoo import guard  # light: no jax

  guard.remove_if_unused(workdir)


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


def _config_files(argv: Sequence[str]) -> dict[str, str]:
  """{flag name: config file} of the `--NAME=FILE.py[:ARGS]` arguments in argv."""
  files = {}
  for arg in argv:
    match = re.fullmatch(r"--(\w+)=(.+?\.py)(:.*)?", arg)
    if match:
      files[match.group(1)] = match.group(2)
  return files


def _load_config(path: str, argv: Sequence[str]) -> Any:
  """The config of a config file as its flag loads it (get_config, with the `:ARGS` of argv)."""
  spec = importlib.util.spec_from_file_location("_zoo_jax_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  arg = next((a.split(f"={path}:", 1)[1] for a in argv if f"={path}:" in a), None)
  return module.get_config(arg) if arg is not None else module.get_config()


def _fields(config: Any, prefix: str = "") -> list[str]:
  """The dotted names of every field of a ConfigDict, sections included."""
  out = []
  for key in config.keys():
    out.append(prefix + key)
    value = config[key]
    if hasattr(value, "keys") and callable(value.keys):
      out += _fields(value, f"{prefix}{key}.")
  return out


def _unknown_field(argv: Sequence[str]) -> str | None:
  """The first `--NAME.FIELD=VALUE` of argv whose FIELD the loaded config lacks, with the closest ones."""
  from absl import flags

  files = _config_files(argv)
  for arg in argv:
    match = re.fullmatch(r"--(\w+)\.([\w.]+)(=.*)?", arg)
    if not match or match.group(1) not in flags.FLAGS:
      continue
    try:
      fields = _fields(_load_config(files[match.group(1)], argv))
    except Exception:  # pylint: disable=broad-except  # no config to compare with: another problem
      continue
    if match.group(2) not in fields:
      close = difflib.get_close_matches(match.group(2), fields, n=3, cutoff=0.6)
      hint = (
        f"did you mean {' or '.join(close)}?"
        if close
        else f"its fields: {[f for f in fields if '.' not in f]}"
      )
      return f"unknown config field {match.group(2)!r} in {arg!r}; {hint}"
  return None


def flag_problem(error: BaseException, argv: Sequence[str]) -> str:
  """The one line for an error while the flags were parsed: an unknown config field (with the
  closest known ones), a config file that does not load (where and why), or the flag error itself."""
  unknown = _unknown_field(argv)
  if unknown:
    return f"bad flag: {unknown}"
  frames = traceback.extract_tb(error.__traceback__)
  for name, path in _config_files(argv).items():
    if not os.path.exists(path):
      return f"bad flag: --{name}: the config file {path!r} does not exist."
    if isinstance(error, SyntaxError) and error.filename and _same_file(error.filename, path):
      return (
        f"bad flag: --{name}: the config file {path} has a syntax error at line {error.lineno}: "
        f"{error.msg}."
      )
    lines = [f.lineno for f in frames if _same_file(f.filename, path)]
    if lines:
      return (
        f"bad flag: --{name}: the config file {path} raised {type(error).__name__}: "
        f"{one_line(error)} (line {lines[-1]}); fix it or pass another config file."
      )
  message = str(error.args[0]) if len(error.args) == 1 else str(error)
  if len(message) > 1 and message[0] == message[-1] == "'":  # a repr inside the message
    try:
      message = ast.literal_eval(message)
    except (ValueError, SyntaxError):
      pass
  return f"bad flag: {message} (see --helpshort)"


def _same_file(a: str, b: str) -> bool:
  try:
    return os.path.samefile(a, b)
  except OSError:
    return False


def run(main: Callable[[list[str]], int | None]) -> NoReturn:
  """Parses flags and runs `main(argv)` (absl.app.run), with usage errors as one line, exit code 2."""
  from absl import app, flags
  from absl import logging as absl_logging

  def parse(argv: Sequence[str]) -> list[str]:
    try:
      rest = flags.FLAGS(argv)
      for name in flags.FLAGS:
        # A config file that fails to load is reported only when the config is first read
        # (ml_collections' placeholder, with _ReportError): report it now, as a flag error.
        getattr(flags.FLAGS[name].value, "_ReportError", lambda: None)()
      return rest
    except Exception as error:  # pylint: disable=broad-except
      if os.environ.get("ZOO_JAX_TRACEBACK"):
        raise
      fail(flag_problem(error, argv))

  def guarded(argv: list[str]) -> int | None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C is KeyboardInterrupt again
    # Orbax logs every file operation at INFO, and a failed write (a full disk) as tracebacks from
    # each of its threads, before the command's own error line: those are kept behind
    # ZOO_JAX_TRACEBACK=1, as the tracebacks of usage errors.
    verbose = bool(os.environ.get("ZOO_JAX_TRACEBACK"))
    absl_logging.set_verbosity(absl_logging.ERROR if verbose else absl_logging.FATAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # orbax's failed reads, reported
    if not verbose:
      threading.excepthook = _quiet_hook  # a library's failed background thread
      sys.unraisablehook = _quiet_hook  # and its failures while it is torn down
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
          f"the disk is full{_where(error)}; free some space and run the same command again: "
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
