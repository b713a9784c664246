"""Preemption-safe Orbax checkpoints in `WORKDIR/checkpoints`.

Orbax writes each step to a temporary directory and renames it when complete, so a save
interrupted at any point leaves the previous checkpoint as the latest restorable one.
"""
import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves every `every_steps` (and when forced), keeps the newest `keep`."""

  def __init__(self, directory: str, every_steps: int, keep: int):
    self.every_steps = max(int(every_steps), 1)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=True,
        cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, abstract_state, step: int | None = None):
    """Restores `step` (default latest) into the structure/shardings of `abstract_state`."""
    step = self.latest_step() if step is None else step
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def should_save(self, step: int) -> bool:
    return step % self.every_steps == 0

  def save(self, step: int, state, force: bool = False):
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(state, sharding):
  """ShapeDtypeStructs with `sharding` for an (abstract or concrete) state."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)
