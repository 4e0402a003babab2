"""The one registry style of zoo_jax: a component family is a package, a component a module of it.

As big_vision picks a model with `importlib.import_module(f"...models.{name}")`, every family
(architectures, datasets, encode methods, samplers, ranking scores, merge methods, import
formats) names its components by the files of its folder: adding one is one new file plus a
config that names it. Each family's `__init__.py` states its contract (the names a module
exposes) and calls `names` / `load` here; modules whose names start with `_` are private helpers.
"""

import functools
import importlib
import pkgutil
from types import ModuleType


@functools.cache
def names(package: str) -> tuple[str, ...]:
  """The components of `package` (e.g. "zoo_jax.samplers"): its public modules, sorted."""
  path = importlib.import_module(package).__path__
  return tuple(sorted(m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_")))


def load(package: str, name: str, field: str) -> ModuleType:
  """The module `name` of `package`; an unknown name is a ValueError naming `field` and the known ones."""
  known = names(package)
  if name not in known:
    raise ValueError(f"{field} {name!r} is unknown; allowed values: {list(known)}.")
  return importlib.import_module(f"{package}.{name}")


def modules(package: str) -> dict[str, ModuleType]:
  """Every component module of `package`, by name (for families whose modules declare several)."""
  return {name: importlib.import_module(f"{package}.{name}") for name in names(package)}
