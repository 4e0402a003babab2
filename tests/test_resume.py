"""A run killed with SIGKILL (mid-epoch, mid-save) resumes to the zoo of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from kill9 import kill_when_exists
from test_train import assert_same_zoo, tiny_config
from zoo_jax import train, zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 3

# Runs the tiny zoo; `KILL_AT` (an optional patch) sends SIGKILL to itself at a chosen moment.
_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    from test_train import tiny_config
    from zoo_jax import train, zoo
    import orbax.checkpoint as ocp
    kill_at = {kill_at!r}
    if kill_at == "between_weights_and_state":
      # The epoch-2 weights are committed, its training state is not.
      original = zoo.ZooWriter.save
      def save(self, epoch, params, metrics, state, *rest):
        if epoch == 2:
          self._checkpoints.save(epoch, args=ocp.args.StandardSave(
              {{str(c): {{"params": params[c], "metrics": metrics[c]}} for c in params}}))
          self._checkpoints.wait_until_finished()
          os.kill(os.getpid(), signal.SIGKILL)
        original(self, epoch, params, metrics, state, *rest)
      zoo.ZooWriter.save = save
    elif kill_at == "during_async_write":
      # Killed when the writer starts waiting for Orbax's background write of the epoch-2
      # weights: the step is then either still a tmp folder or just committed.
      original = ocp.CheckpointManager.wait_until_finished
      def wait(self):
        if os.path.basename(str(self.directory)) == "checkpoints" and 2 in self.all_steps(read=True) or \\
            any(".orbax-checkpoint-tmp" in n and n.startswith("2") for n in os.listdir(self.directory)):
          os.kill(os.getpid(), signal.SIGKILL)
        return original(self)
      ocp.CheckpointManager.wait_until_finished = wait
    train.train_and_evaluate(tiny_config(num_epochs={epochs}), {workdir!r})
""")


def _run(workdir, kill_at=None, wait=True):
  script = _SCRIPT.format(
    root=ROOT, tests=os.path.join(ROOT, "tests"), kill_at=kill_at, epochs=EPOCHS, workdir=workdir
  )
  proc = subprocess.Popen(
    [sys.executable, "-c", script],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )
  if not wait:
    return proc
  out, err = proc.communicate(timeout=900)
  return proc.returncode, out, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference"))
  train.train_and_evaluate(tiny_config(num_epochs=EPOCHS), workdir)
  return workdir


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(reference, tmp_path):
  workdir = str(tmp_path / "zoo")
  # Once epoch 1 is committed, killed while epoch 2 trains.
  kill_when_exists(_run(workdir, wait=False), os.path.join(workdir, "state", "1"))
  assert zoo.Zoo(workdir).epochs[-1] < EPOCHS  # it really died before finishing
  code, out, err = _run(workdir)
  assert code == 0, err[-3000:]
  assert "Resuming" in out
  assert_same_zoo(workdir, reference)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["between_weights_and_state", "during_async_write"])
def test_sigkill_mid_save_then_resume_equals_uninterrupted(reference, tmp_path, kill_at):
  workdir = str(tmp_path / "zoo")
  code, _, err = _run(workdir, kill_at=kill_at)
  assert code == -signal.SIGKILL, err[-3000:]
  assert zoo.Zoo(workdir).epochs[-1] <= 2
  code, out, err = _run(workdir)
  assert code == 0, err[-3000:]
  assert "Resuming the zoo" in out and "after epoch 1" in out
  assert_same_zoo(workdir, reference)
