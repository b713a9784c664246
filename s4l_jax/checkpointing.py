"""Preemption-safe Orbax checkpoints in `WORKDIR/checkpoints`, with checksums.

Orbax writes each step to a temporary directory and renames it when complete, so a save
interrupted at any point leaves the previous checkpoint as the latest restorable one. Once a
save has committed, `<step>/CHECKSUMS_FILE` records the SHA-256 of each of its files (written
by process 0 when the next step finds the save finished, or at the next save or close). A
checkpoint that is complete but damaged later (a deleted, truncated or altered file: its
checksum differs) is moved to `WORKDIR/checkpoints_damaged/` on restore and the next older one
is used instead; one killed before its checksums were written restores unverified.
`rewind(step)` sets the checkpoints newer than `step` aside in `WORKDIR/checkpoints_superseded/`
(`resume_step`).
"""
import contextlib
import dataclasses
import hashlib
import json
import os
import sys

import jax
import orbax.checkpoint as ocp
from absl import logging

from s4l_jax import distributed, storage

CHECKSUMS_FILE = "s4l_checksums.json"
# The state is Orbax's one unnamed item, saved in `<step>/ITEM/`.
ITEM = ocp.checkpoint_manager.DEFAULT_ITEM_NAME


class CheckpointMismatchError(ValueError):
  """The checkpoint holds arrays of other names or shapes than the state being restored."""


class ChecksumError(ValueError):
  """A checkpoint file is missing or its content differs from the checksum saved with it."""


def _files(directory: str, prefix: str = "") -> list[str]:
  """Paths of the files under `directory`, relative to it, sorted."""
  out = []
  for name in sorted(storage.listdir(directory)):
    path = storage.join(directory, name)
    if storage.isdir(path):
      out += _files(path, f"{prefix}{name}/")
    elif prefix or name != CHECKSUMS_FILE:
      out.append(prefix + name)
  return out


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with storage.open_file(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def write_checksums(step_dir: str):
  """Writes `step_dir/CHECKSUMS_FILE`: {relative path: SHA-256} of every file of the step."""
  sums = {name: _sha256(storage.join(step_dir, name)) for name in _files(step_dir)}
  storage.write_text(storage.join(step_dir, CHECKSUMS_FILE), json.dumps(sums, indent=0))


def verify_checksums(step_dir: str) -> bool:
  """Raises ChecksumError naming the first file that is missing or differs; returns whether
  the step had checksums to verify."""
  path = storage.join(step_dir, CHECKSUMS_FILE)
  if not storage.exists(path):
    return False
  for name, want in json.loads(storage.read_text(path)).items():
    file_path = storage.join(step_dir, name)
    if not storage.exists(file_path):
      raise ChecksumError(f"{name} is missing")
    if _sha256(file_path) != want:
      raise ChecksumError(f"checksum mismatch in {name}")
  return True


class Checkpointer:
  """Saves every `every_steps` (and when forced), keeps the newest `keep`."""

  def __init__(self, directory: str, every_steps: int, keep: int):
    self.directory = storage.absolute(directory)
    self.every_steps = max(int(every_steps), 1)
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp.checkpoint_managers.LatestN(n=keep), create=True,
        enable_async_checkpointing=True, cleanup_tmp_directories=True)
    handlers = ocp.handlers.create_default_handler_registry(
        **{ITEM: ocp.StandardCheckpointHandler()})
    self._manager = ocp.CheckpointManager(storage.as_path(self.directory), options=options,
                                          handler_registry=handlers)
    self._unsummed = []  # saved steps whose checksums are not written yet

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
    self._write_checksums(wait=True)  # a save of this process in flight commits first
    for step in reversed(self.all_steps()):
      try:
        step_dir = storage.join(self.directory, str(step))
        # Checked before Orbax reads the step: Orbax infers its single-item mode from the
        # first step it reads and keeps that mode, so a step lacking ITEM/ must not be first.
        if not storage.isdir(storage.join(step_dir, ITEM)):
          raise FileNotFoundError(f"{ITEM}/ is missing")
        verify_checksums(step_dir)
        with _quiet_abandoned_io():
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
    cause = root_cause(error)
    first_line = (str(cause).strip().splitlines() or [""])[0][:200]
    logging.warning("Checkpoint at step %d does not restore (%s%s); moved it to %s and "
                    "trying the previous one", step, type(cause).__name__,
                    f": {first_line}" if first_line else "", aside)

  def rewind(self, step: int):
    """Sets aside the checkpoints newer than `step` into `<directory>_superseded/to_<step>/`
    (nothing is deleted), so that training resumes from `step`; once: when that folder
    exists (a re-run of the same command), it does nothing. ValueError (one line) when no
    checkpoint of `step` is kept."""
    record = storage.join(self.directory + "_superseded", f"to_{step}")
    if distributed.agree(storage.exists(record)):
      return
    steps = self.all_steps()
    if step not in steps:
      raise ValueError(f"resume_step={step}: {self.directory} keeps no checkpoint of step "
                       f"{step} (kept: {steps or 'none'}); pass one of those")
    newer = [s for s in steps if s > step]
    if distributed.is_writer():
      storage.makedirs(record)
      for s in newer:
        storage.rename(storage.join(self.directory, str(s)), storage.join(record, str(s)))
    distributed.barrier(f"{self.directory}: rewound to {step}")
    self._manager.reload()
    logging.warning("resume_step=%d: moved the newer checkpoints %s to %s", step, newer, record)

  def should_save(self, step: int) -> bool:
    return step % self.every_steps == 0

  def save(self, step: int, state, force: bool = False):
    if step in self._manager.all_steps():
      return
    self._write_checksums(wait=True)  # Orbax waits for the previous save anyway
    logging.info("Saving checkpoint at step %d", step)
    self._manager.save(step, args=ocp.args.StandardSave(state), force=force)
    self._unsummed.append(step)

  def poll(self):
    """Writes the checksums of saves that have committed since (cheap when none has)."""
    if self._unsummed and not self._manager.is_saving_in_progress():
      self._write_checksums(wait=False)

  def _write_checksums(self, wait: bool):
    if wait:
      with _quiet_abandoned_io():  # a failed save (a full disk) abandons its other writes
        self._manager.wait_until_finished()
    kept = set(self._manager.all_steps())
    if distributed.is_writer():
      for step in self._unsummed:
        if step in kept:
          write_checksums(storage.join(self.directory, str(step)))
    self._unsummed = []

  def close(self):
    self._write_checksums(wait=True)
    self._manager.close()


def root_cause(error: BaseException) -> BaseException:
  """The innermost error of `error`'s chain of causes (Orbax wraps TensorStore's, adding only
  an unreadable spec)."""
  while error.__cause__ is not None:
    error = error.__cause__
  return error


@contextlib.contextmanager
def _quiet_abandoned_io():
  """A failed read or write abandons Orbax's other pending ones, each of which would print a
  traceback ('Exception ignored in coroutine' when collected, 'Event loop is closed' from
  TensorStore's threads, during the failure and after it); the caller reports the failure
  itself in one line. The two hooks drop only those, and stay after a failure."""
  previous = sys.excepthook, sys.unraisablehook
  sys.excepthook = _drop_closed_loop_errors(sys.excepthook)
  sys.unraisablehook = _drop_abandoned_coroutines(sys.unraisablehook)
  yield
  sys.excepthook, sys.unraisablehook = previous  # not reached when the read or write failed


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
