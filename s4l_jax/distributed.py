"""Device mesh and host-to-global array helpers (1-D `data` mesh, SPMD `jax.jit`).

The batch is sharded over every device of every host; state is replicated. Under `jit`,
means over the batch (losses, BatchNorm statistics) are global: XLA inserts the all-reduces.
"""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(devices=None) -> Mesh:
  """1-D mesh named `data` over `devices` (default: every device of every host)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), ("data",))


def data_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_divisible(global_batch: int, what: str):
  """Fails with one line when a global batch cannot be split over the devices."""
  n = jax.device_count()
  if global_batch % n:
    raise ValueError(f"{what}={global_batch} is not divisible by the {n} devices; "
                     f"use a multiple of {n}")


def to_global(tree, mesh: Mesh):
  """Host-local numpy batch (leading axis = this host's share) -> global sharded arrays."""
  sharding = data_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), tree)


def to_host(tree):
  """Replicated (or fully addressable) arrays -> numpy."""
  return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)
