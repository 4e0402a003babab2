"""Two processes on localhost (jax.distributed, gloo CPU collectives, 2 forced devices each)
train the zoo of one process, and resume after one of them is killed."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pandas as pd
import pytest

from zoo_jax import zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 2

_SCRIPT = textwrap.dedent("""
    import faulthandler, sys
    faulthandler.dump_traceback_later(480, exit=True)  # a hung collective shows where, then ends
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    from test_multihost import multihost_config
    from zoo_jax import train
    train.train_and_evaluate(multihost_config(distributed=True), {workdir!r})
    import jax
    assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
    print("PROCESS", jax.process_index(), "DONE")
""")


def multihost_config(distributed: bool):
  """12 models in 2 cohorts of 6 (tanh; adam, sgd; 2 learning rates; 3 seeds): each cohort is padded
  to 8 rows, 2 per device, so process 1 holds real rows and padding copies."""
  from conftest import tiny_zoo_config

  c = tiny_zoo_config()
  c.population.num_seeds = 3
  c.population.grid.activation = ("tanh",)
  c.dataset.train_size = 100
  c.dataset.eval_size = 100
  c.num_epochs = EPOCHS
  c.distributed = distributed
  return c


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(workdir: str) -> list[subprocess.Popen]:
  """Both processes of one run, as a launcher would start them (explicit coordinator settings)."""
  port = _free_port()
  script = _SCRIPT.format(root=ROOT, tests=os.path.join(ROOT, "tests"), workdir=workdir)
  procs = []
  for i in range(2):
    # A process waits for its peer at each collective; on a loaded machine (CI, shared cores) the
    # peer may still be compiling long after XLA's default patience.
    flags = (
      "--xla_force_host_platform_device_count=2 --xla_cpu_collective_call_terminate_timeout_seconds=900 "
      "--xla_cpu_collective_timeout_seconds=900"
    )
    # Likewise the coordination service: a starved process misses heartbeats (jax's default 100 s)
    # and the service aborts both; pinned long here, the kill test kills the survivor itself.
    env = dict(
      os.environ,
      JAX_PLATFORMS="cpu",
      XLA_FLAGS=flags,
      JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
      JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
      JAX_NUM_PROCESSES="2",
      JAX_PROCESS_ID=str(i),
      ZOO_JAX_HEARTBEAT_TIMEOUT_SECONDS="900",
      ZOO_JAX_INITIALIZATION_TIMEOUT_SECONDS="900",
    )
    procs.append(
      subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
    )
  return procs


def _wait(procs: list[subprocess.Popen]) -> list[str]:
  outs = [p.communicate(timeout=600) for p in procs]
  failed = [
    f"process {i} exit {p.returncode}:\n" + _why(err)
    for i, (p, (_, err)) in enumerate(zip(procs, outs))
    if p.returncode
  ]
  if failed:
    pytest.fail("\n\n".join(failed), pytrace=False)
  return [out for out, _ in outs]


def _why(stderr: str) -> str:
  """A failed process's error lines (an abort's message is printed above its stack trace) and last lines."""
  lines = stderr.strip().splitlines()
  errors = [
    line for line in lines[:-12] if any(w in line for w in ("Error", "error:", "ERROR", "F0", "E0"))
  ]
  return "\n".join(errors[-8:] + ["..."] * bool(errors) + lines[-12:])


@pytest.fixture(scope="module")
def two_process_zoo(tmp_path_factory) -> str:
  workdir = str(tmp_path_factory.mktemp("multihost"))
  outs = _wait(_launch(workdir))
  assert "PROCESS 0 DONE" in outs[0] and "PROCESS 1 DONE" in outs[1]
  return workdir


@pytest.mark.slow
def test_two_processes_equal_one_process(two_process_zoo, tmp_path):
  from zoo_jax import train

  single_dir = str(tmp_path / "single")
  train.train_and_evaluate(multihost_config(distributed=False), single_dir)
  a, b = zoo.Zoo(two_process_zoo), zoo.Zoo(single_dir)
  assert len(a.models) == 12 and a.epochs == list(
    range(EPOCHS + 1)
  )  # padding copies are not in the zoo
  pd.testing.assert_frame_equal(a.models, b.models)
  assert len(a.metrics) == 12 * (EPOCHS + 1) and (a.metrics["status"] == "ok").all()
  np.testing.assert_array_equal(a.flat(epoch=0), b.flat(epoch=0))
  for epoch in range(1, EPOCHS + 1):  # model by model; XLA may reorder float sums, nothing more
    np.testing.assert_allclose(a.flat(epoch=epoch), b.flat(epoch=epoch), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(a.metrics["test_acc"], b.metrics["test_acc"], atol=2e-3)


@pytest.mark.slow
def test_kill_one_process_then_relaunch_both_resumes_to_the_same_weights(two_process_zoo, tmp_path):
  workdir = str(tmp_path / "zoo")
  procs = _launch(workdir)
  deadline = time.time() + 600
  while not os.path.exists(os.path.join(workdir, zoo.STATE_DIR, "1")) and time.time() < deadline:
    assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGKILL)  # mid epoch 2 (or mid its save)
  procs[1].communicate()
  try:  # the survivor fails at its next collective; a cluster launcher would kill it too
    procs[0].communicate(timeout=20)
  except subprocess.TimeoutExpired:
    procs[0].send_signal(signal.SIGKILL)
    procs[0].communicate()
  assert zoo.Zoo(workdir).epochs[-1] < EPOCHS  # it really died before finishing
  outs = _wait(_launch(workdir))
  assert "Resuming the zoo" in outs[0]
  a, b = zoo.Zoo(workdir), zoo.Zoo(two_process_zoo)
  assert a.epochs == b.epochs
  pd.testing.assert_frame_equal(a.metrics, b.metrics)
  for epoch in a.epochs:
    jax.tree.map(np.testing.assert_array_equal, a.params(epoch=epoch), b.params(epoch=epoch))
