"""Device mesh, host-to-global array helpers (1-D `data` mesh, SPMD `jax.jit`), and the
agreements between processes of a multi-process job.

The batch is sharded over every device of every host; state is replicated. Under `jit`,
means over the batch (losses, BatchNorm statistics) are global: XLA inserts the all-reduces.
Every process runs the same program; plain files are written by process 0 (`is_writer`)
followed by a `barrier`, and decisions read from files or signals are agreed on (`agree`,
`max_over_processes`). With one process these cost nothing and return their input.
"""
import jax
import numpy as np
from jax.experimental import multihost_utils
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


def is_writer() -> bool:
  """Whether this process writes the plain files (results, export, configs): process 0."""
  return jax.process_index() == 0


def barrier(name: str):
  """Waits until every process reaches `barrier(name)` (same name everywhere)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def agree(flag: bool) -> bool:
  """Process 0's `flag`, on every process (a decision read from the shared workdir)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag, np.int32)))


def max_over_processes(value: int) -> int:
  """The largest of every process's integer `value` (e.g. a received signal's number)."""
  if jax.process_count() == 1:
    return int(value)
  return int(np.max(multihost_utils.process_allgather(np.asarray(value, np.int32))))
