"""Errors for people: a usage error ends a command with one line, a traceback is for bugs.

`UsageError` subclasses ValueError, so callers (and tests) that catch ValueError keep working;
`zoo_jax.cli.run` prints it as `error: <message>` with exit code 2.
"""


class UsageError(ValueError):
  """Bad input from the user: a config value, a flag, a file or folder in the wrong state."""


class WorkdirLocked(UsageError):
  """Another live process is writing the workdir."""


class DamagedZoo(UsageError):
  """A zoo file is missing, unreadable, or disagrees with the checkpoints; the message names it."""


class MissingDependency(UsageError, ImportError):
  """An optional package a config needs is not installed; the message says how to install it."""
