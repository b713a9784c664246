"""Preemption-safe Orbax checkpoints in `WORKDIR/checkpoints`.

Orbax writes each step to a temporary directory and renames it when complete, so a save
interrupted at any point leaves the previous checkpoint as the latest restorable one. A
checkpoint that is complete but damaged later (a deleted or truncated file) is moved to
`WORKDIR/checkpoints_damaged/` on restore and the next older one is used instead.
"""
import contextlib
import dataclasses
import os
import sys

import jax
import orbax.checkpoint as ocp
from absl import logging

from s4l_jax import storage


class CheckpointMismatchError(ValueError):
  """The checkpoint holds arrays of other names or shapes than the state being restored."""


class Checkpointer:
  """Saves every `every_steps` (and when forced), keeps the newest `keep`."""

  def __init__(self, directory: str, every_steps: int, keep: int):
    self.directory = storage.absolute(directory)
    self.every_steps = max(int(every_steps), 1)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=True,
        cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(storage.as_path(self.directory), options=options,
                                          item_handlers=ocp.StandardCheckpointHandler())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def restore(self, abstract_state, step: int | None = None):
    """Restores `step` (default latest) into the structure/shardings of `abstract_state`.

    A top-level entry of `abstract_state` (a dict or dataclass) that holds no arrays (`{}`) and
    that the checkpoint lacks, written before the entry existed (`TrainState.objective_state`),
    keeps its value: such checkpoints still resume.
    """
    step = self.latest_step() if step is None else step
    saved, entries = self._manager.item_metadata(step).tree, _entries(abstract_state)
    absent = {k for k, v in entries.items() if k not in saved and not jax.tree.leaves(v)}
    if not absent:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    present = {k: v for k, v in entries.items() if k not in absent}
    restored = self._manager.restore(step, args=ocp.args.StandardRestore(present))
    if isinstance(abstract_state, dict):
      return {**abstract_state, **restored}
    return dataclasses.replace(abstract_state, **restored)

  def restore_newest_intact(self, abstract_state):
    """The newest checkpoint that restores into `abstract_state`, or None if there is none.

    Raises CheckpointMismatchError (one line) when the newest checkpoint was written for a
    different model (array names or shapes); damaged checkpoints are set aside with a warning.
    """
    for step in reversed(self.all_steps()):
      try:
        with _quiet_abandoned_reads():
          mismatch = describe_mismatch(self._manager.item_metadata(step).tree, abstract_state)
          if not mismatch:
            return self.restore(abstract_state, step)
      except Exception as e:  # pylint: disable=broad-except  # tensorstore/zstd/IO errors
        self._set_aside(step, e)
        continue
      raise CheckpointMismatchError(
          f"The checkpoint at step {step} in {self.directory} was written for a different "
          f"model ({mismatch}): use the config that wrote it, or a new --workdir")
    return None

  def _set_aside(self, step: int, error: Exception):
    """Moves a damaged step directory to `<directory>_damaged/<step>` (nothing is deleted)."""
    damaged = self.directory + "_damaged"
    aside, suffix = storage.join(damaged, str(step)), 1
    while storage.exists(aside):
      aside, suffix = storage.join(damaged, f"{step}.{suffix}"), suffix + 1
    storage.makedirs(damaged)
    storage.rename(storage.join(self.directory, str(step)), aside)
    self._manager.reload()
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    logging.warning("Checkpoint at step %d does not restore (%s: %s); moved it to %s and "
                    "trying the previous one", step, type(error).__name__, first_line, aside)

  def should_save(self, step: int) -> bool:
    return step % self.every_steps == 0

  def save(self, step: int, state, force: bool = False):
    if step in self._manager.all_steps():
      return
    logging.info("Saving checkpoint at step %d", step)
    self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


@contextlib.contextmanager
def _quiet_abandoned_reads():
  """A failed read abandons Orbax's other pending reads, each of which would print a
  traceback ('Exception ignored in coroutine' when collected, 'Event loop is closed' from
  TensorStore's threads, during the failure and after it); the caller reports the failure
  itself in one line. The two hooks drop only those, and stay after a failure."""
  previous = sys.excepthook, sys.unraisablehook
  sys.excepthook = _drop_closed_loop_errors(sys.excepthook)
  sys.unraisablehook = _drop_abandoned_coroutines(sys.unraisablehook)
  yield
  sys.excepthook, sys.unraisablehook = previous  # not reached when the read failed


def _is_closed_loop_error(kind, value) -> bool:
  return kind is RuntimeError and str(value) == "Event loop is closed"


def _drop_closed_loop_errors(excepthook):
  if getattr(excepthook, "drops_abandoned_reads", False):
    return excepthook

  def hook(kind, value, traceback):
    if not _is_closed_loop_error(kind, value):
      excepthook(kind, value, traceback)
  hook.drops_abandoned_reads = True
  return hook


def _drop_abandoned_coroutines(unraisablehook):
  if getattr(unraisablehook, "drops_abandoned_reads", False):
    return unraisablehook

  def hook(unraisable):
    code = getattr(unraisable.object, "cr_code", None)
    orbax = code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename
    if not (orbax or _is_closed_loop_error(unraisable.exc_type, unraisable.exc_value)):
      unraisablehook(unraisable)
  hook.drops_abandoned_reads = True
  return hook


def _entries(state) -> dict:
  """The top-level entries of a dict or dataclass state, by name."""
  if isinstance(state, dict):
    return dict(state)
  return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def _flat_shapes(tree) -> dict[str, tuple]:
  """{'params/conv/kernel': shape} for arrays, ShapeDtypeStructs or Orbax ArrayMetadata."""
  def name(entry):
    for attr in ("key", "name", "idx"):
      if hasattr(entry, attr):
        return str(getattr(entry, attr))
    return str(entry)
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(name(e) for e in path): tuple(leaf.shape) for path, leaf in leaves}


def describe_mismatch(saved_tree, abstract_state) -> str:
  """'' if both trees hold the same array names and shapes, else the first differences."""
  saved, wanted = _flat_shapes(saved_tree), _flat_shapes(abstract_state)
  problems = [f"{k}: saved {saved[k]}, now {wanted[k]}" for k in sorted(saved.keys() & wanted)
              if saved[k] != wanted[k]]
  missing, extra = sorted(wanted.keys() - saved), sorted(saved.keys() - wanted)
  if missing:
    problems.append(f"{len(missing)} arrays not in the checkpoint, e.g. {missing[0]}")
  if extra:
    problems.append(f"{len(extra)} checkpoint arrays not in the model, e.g. {extra[0]}")
  return "; ".join(problems[:3]) + (f"; {len(problems) - 3} more" if len(problems) > 3 else "")


def abstract_like(state, sharding):
  """ShapeDtypeStructs with `sharding` for an (abstract or concrete) state."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state)
