"""Executes every notebook in colabs/ headless on a tiny zoo; notebooks are committed without outputs."""

import glob
import os
import sys

import ipykernel  # noqa: F401  the kernel nbclient starts
import jupyter_client
import nbclient
import nbformat
import pytest


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "colabs", "*.ipynb")))
# Overrides appended to each notebook's `parameters` cell: a zoo of a few models, one epoch, and
# the shortest encoder training and sampling (names a notebook does not use are ignored).
CI_PARAMETERS = """
# CI overrides (tests/test_colabs.py)
WORKDIR = {workdir!r}
NUM_SEEDS = 2
NUM_EPOCHS = 1
TRAIN_SIZE = 200
BATCH_SIZE = 25
ENCODE_SEEDS = 1
ENCODER_EPOCHS = 2
NUM_SAMPLES = 2
SAMPLE_SEEDS = 1
FINETUNE_EPOCHS = 1
ACTIVATIONS = ("relu",)
FINETUNE_SIZE = 200
PROBE_SIZE = 100
TRAIN_TASKS = ("mnist5k_rot90", "mnist5k_invert")
"""


def _parameters_cell(notebook):
  cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(cells) == 1, "a notebook needs exactly one code cell tagged 'parameters'"
  assert cells[0].cell_type == "code"
  return cells[0]


def test_there_are_notebooks():
  assert NOTEBOOKS, "colabs/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_committed_clean(path):
  notebook = nbformat.read(path, as_version=4)
  nbformat.validate(notebook)
  _parameters_cell(notebook)
  for i, cell in enumerate(notebook.cells):
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (
        f"{os.path.basename(path)} cell {i} has outputs; clear them before committing "
        "(jupyter nbconvert --clear-output --inplace)"
      )


def test_python3_kernel_is_this_interpreter():
  command = jupyter_client.KernelManager(kernel_name="python3").format_kernel_cmd()
  assert os.path.realpath(command[0]) == os.path.realpath(sys.executable), command


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, tmp_path, monkeypatch):
  monkeypatch.setenv("MPLBACKEND", "Agg")  # the kernel inherits the environment: no display
  notebook = nbformat.read(path, as_version=4)
  cell = _parameters_cell(notebook)
  cell.source += CI_PARAMETERS.format(workdir=str(tmp_path / "zoo"))
  client = nbclient.NotebookClient(
    notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": ROOT}}
  )
  client.execute()  # raises CellExecutionError, naming the cell, on the first error
