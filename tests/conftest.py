"""Shared fixtures: small real datasets, and the repo root on sys.path (for configs/)."""

import os
import sys

import pytest

# Share compiled XLA programs between tests and their subprocesses (each tiny zoo run would
# otherwise recompile the same epoch function); set before jax is imported.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.environ.get("PYTEST_CACHE_ROOT", "/tmp"), f"zoo_jax_test_xla_cache_{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def mnist5k():
  from zoo_jax import data
  return {split: data.load("mnist5k", split) for split in data.SPLITS}
