"""The population axis sharded over a mesh of all devices, of one process or of several.

Each cohort is padded to a multiple of the device count with copies of its last
model (the copies are never written to the tables); data is replicated.

Several processes (hosts) join one run through `jax.distributed` (`initialize`); the mesh
then spans every process's devices, ordered by process, so each process holds one
contiguous block of model rows (`local_rows`), builds only those (`shard_models` takes
this process's rows) and reads metrics back with `to_host`.
"""

import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MODEL_AXIS = "models"
# Explicit multi-process settings, for launchers that jax.distributed does not detect itself
# (JAX_COORDINATOR_ADDRESS=host:port is read by jax.distributed directly).
NUM_PROCESSES_ENV, PROCESS_ID_ENV = "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"
# Patience of the coordination service, in seconds (jax.distributed.initialize's arguments): on
# a machine whose cores are shared, a starved process can miss heartbeats (jax's default: 100 s)
# or reach the coordinator late (300 s), and the service then aborts every process.
TIMEOUT_ENVS = {
  "ZOO_JAX_HEARTBEAT_TIMEOUT_SECONDS": "heartbeat_timeout_seconds",
  "ZOO_JAX_INITIALIZATION_TIMEOUT_SECONDS": "initialization_timeout",
}


def initialize() -> None:
  """Joins this process to a multi-process run (call before any other JAX call).

  Explicit: JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES=N and JAX_PROCESS_ID=i in
  every process's environment. Otherwise jax.distributed detects the cluster: SLURM (srun),
  Open MPI (mpirun) or a Cloud TPU pod slice. CPU processes talk through gloo collectives.
  ZOO_JAX_HEARTBEAT_TIMEOUT_SECONDS and ZOO_JAX_INITIALIZATION_TIMEOUT_SECONDS, if set, lengthen
  the coordination service's timeouts (for loaded or slow-starting machines).
  """
  if jax.distributed.is_initialized():
    return
  explicit = {}
  settings = {NUM_PROCESSES_ENV: "num_processes", PROCESS_ID_ENV: "process_id", **TIMEOUT_ENVS}
  for name, key in settings.items():
    value = os.environ.get(name)
    if value is not None:
      if not value.strip().isdigit() or (name in TIMEOUT_ENVS and int(value) < 1):
        raise ValueError(
          f"Environment variable {name} must be a{' positive' if name in TIMEOUT_ENVS else ' non-negative'}"
          f" integer, got {value!r}."
        )
      explicit[key] = int(value)
  try:
    jax.distributed.initialize(**explicit)
  except ValueError as error:  # no cluster detected and nothing explicit
    raise ValueError(
      f"config.distributed=True but no multi-process setting was found ({error}). Launch under SLURM "
      f"(srun), mpirun or on a TPU pod slice, or set JAX_COORDINATOR_ADDRESS=host:port, "
      f"{NUM_PROCESSES_ENV} and {PROCESS_ID_ENV} in every process."
    ) from error


def is_primary() -> bool:
  """Whether this process writes the tables and config (process 0; the only one without distribution)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches `name` (nothing to wait for in one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def population_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: all devices of all processes), grouped by process."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(sorted(devices, key=lambda d: (d.process_index, d.id))), (MODEL_AXIS,))


def padded_index(num_models: int, num_devices: int) -> np.ndarray:
  """Row indices [P_padded]: 0..P-1, then the last row repeated to fill the last shard."""
  padded = -(-num_models // num_devices) * num_devices
  return np.minimum(np.arange(padded), num_models - 1)


def local_rows(num_rows: int, mesh: Mesh) -> slice:
  """The rows of a [num_rows, ...] model-sharded array that this process's devices hold."""
  devices = list(mesh.devices.flat)
  mine = [i for i, d in enumerate(devices) if d.process_index == jax.process_index()]
  per_device = num_rows // len(devices)
  return slice(mine[0] * per_device, (mine[-1] + 1) * per_device) if mine else slice(0, 0)


def shard_models(tree, mesh: Mesh):
  """Places every leaf [P_local, ...] (this process's rows, `local_rows`) split along the model
  axis of `mesh`; the result is the global [P, ...] array."""
  sharding = NamedSharding(mesh, PartitionSpec(MODEL_AXIS))
  local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)

  def place(x):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(
      sharding, x, (x.shape[0] * mesh.devices.size // local,) + x.shape[1:]
    )

  return jax.tree.map(place, tree)


def replicate(tree, mesh: Mesh):
  """Places every leaf whole on every device (the datasets); every process passes the same data."""
  sharding = NamedSharding(mesh, PartitionSpec())
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x), np.shape(x)), tree
  )


def to_host(tree):
  """Every leaf as a whole numpy array on every process (gathered from the other processes' rows)."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return multihost_utils.process_allgather(tree, tiled=True)


def per_device(fn, mesh: Mesh):
  """`fn(models, images, labels, *more_models)` run by every device on its own rows of the model axis.

  For functions of independent models (an epoch, an evaluation) whose outputs are all
  model-sharded: left to the SPMD partitioner, their lax.map over models comes back
  replicated, every device computing every model. One device: `fn` itself.
  """
  if mesh.devices.size == 1:
    return fn
  models, whole = PartitionSpec(MODEL_AXIS), PartitionSpec()

  def run(tree, images, labels, *more_models):  # e.g. evaluate's model_state
    specs = (models, whole, whole) + (models,) * len(more_models)
    return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=models)(
      tree, images, labels, *more_models
    )

  return jax.jit(run)
