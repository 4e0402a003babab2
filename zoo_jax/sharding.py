"""The population axis sharded over a mesh of all local devices.

Each cohort is padded to a multiple of the device count with copies of its last
model (the copies are never written to the tables); data is replicated.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MODEL_AXIS = "models"


def population_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: all devices) whose axis is the model axis."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (MODEL_AXIS,))


def padded_index(num_models: int, num_devices: int) -> np.ndarray:
  """Row indices [P_padded]: 0..P-1, then the last row repeated to fill the last shard."""
  padded = -(-num_models // num_devices) * num_devices
  return np.minimum(np.arange(padded), num_models - 1)


def shard_models(tree, mesh: Mesh):
  """Places every leaf [P, ...] split along its leading (model) axis."""
  sharding = NamedSharding(mesh, PartitionSpec(MODEL_AXIS))
  return jax.device_put(tree, sharding)


def replicate(tree, mesh: Mesh):
  """Places every leaf whole on every device (the datasets)."""
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


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
    return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=models)(tree, images, labels, *more_models)

  return jax.jit(run)
