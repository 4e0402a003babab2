"""Shared fixtures: small real datasets, and the repo root on sys.path (for configs/)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def mnist5k():
  from zoo_jax import data
  return {split: data.load("mnist5k", split) for split in data.SPLITS}
