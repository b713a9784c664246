"""Checkpoints: damaged newest checkpoints fall back to older ones; other models are refused."""
import hashlib
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax

from s4l_jax import checkpointing, train_state

SHARDING = jax.sharding.SingleDeviceSharding(jax.devices()[0])


def _state(step):
  return {"w": jnp.arange(12.0).reshape(3, 4) + step, "step": jnp.asarray(step)}


def _write(directory):
  ckpt = checkpointing.Checkpointer(directory, 2, 3)
  for step in (2, 4):
    ckpt.save(step, _state(step))
  ckpt.close()


def _files(directory):
  return sorted(os.path.relpath(os.path.join(root, name), directory)
                for root, _, names in os.walk(directory) for name in names)


def _damage(path, how):
  if how == "delete":
    os.remove(path)
  else:
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)


@pytest.mark.parametrize("how", ("delete", "truncate"))
@pytest.mark.slow
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, how, caplog):
  """Each file of the newest step damaged in turn: it restores intact, or step 2 does."""
  abstract = checkpointing.abstract_like(_state(0), SHARDING)
  _write(str(tmp_path / "layout"))
  fell_back = []
  for case in range(len(_files(str(tmp_path / "layout" / "4")))):
    directory = str(tmp_path / str(case) / "checkpoints")
    _write(directory)
    name = _files(os.path.join(directory, "4"))[case]
    _damage(os.path.join(directory, "4", name), how)
    caplog.clear()
    ckpt = checkpointing.Checkpointer(directory, 2, 3)
    restored = ckpt.restore_newest_intact(abstract)
    ckpt.close()
    step = int(restored["step"])
    for key, value in _state(step).items():
      np.testing.assert_array_equal(restored[key], value, err_msg=f"{how} {name}")
    assert step in (2, 4), name
    if step == 2:  # set aside (not deleted) and said so in one warning
      fell_back.append(name)
      assert os.path.isdir(os.path.join(str(tmp_path / str(case)), "checkpoints_damaged", "4"))
      assert not os.path.exists(os.path.join(directory, "4")), name
      assert sum("does not restore" in r.getMessage() for r in caplog.records) == 1, name
  # The array data, its manifest and the tree metadata cannot be lost (the rest is redundant).
  kind = lambda name: "default/d/*" if name.startswith("default/d/") else name
  assert {"default/_METADATA", "default/manifest.ocdbt", "default/d/*"} <= set(
      map(kind, fell_back)), fell_back


def test_no_intact_checkpoint_restores_nothing(tmp_path):
  directory = str(tmp_path / "checkpoints")
  _write(directory)
  for step in ("2", "4"):
    for name in _files(os.path.join(directory, step)):
      if name.startswith("default/d/"):
        os.remove(os.path.join(directory, step, name))
  ckpt = checkpointing.Checkpointer(directory, 2, 3)
  assert ckpt.restore_newest_intact(checkpointing.abstract_like(_state(0), SHARDING)) is None
  assert ckpt.latest_step() is None
  ckpt.close()
  assert sorted(os.listdir(str(tmp_path / "checkpoints_damaged"))) == ["2", "4"]


def test_step_without_its_item_directory_falls_back_to_the_previous(tmp_path, caplog):
  """The newest step lost `default/` and its checksums (killed before they were written): it
  is set aside in one warning and the older step restores (Orbax, reading it first, would
  have taken the step for a multi-item one and refused every older step too)."""
  directory = str(tmp_path / "checkpoints")
  _write(directory)
  step_dir = os.path.join(directory, "4")
  shutil.rmtree(os.path.join(step_dir, checkpointing.ITEM))
  os.remove(os.path.join(step_dir, checkpointing.CHECKSUMS_FILE))
  ckpt = checkpointing.Checkpointer(directory, 2, 3)
  restored = ckpt.restore_newest_intact(checkpointing.abstract_like(_state(0), SHARDING))
  ckpt.close()
  assert int(restored["step"]) == 2
  warnings = [r.getMessage() for r in caplog.records if "does not restore" in r.getMessage()]
  assert len(warnings) == 1 and "FileNotFoundError: default/ is missing" in warnings[0]
  assert os.path.isdir(tmp_path / "checkpoints_damaged" / "4")


def test_checkpoint_of_another_model_is_refused_in_one_line(tmp_path):
  directory = str(tmp_path / "checkpoints")
  _write(directory)
  ckpt = checkpointing.Checkpointer(directory, 2, 3)
  wider = {"w": jnp.zeros((3, 8)), "step": jnp.asarray(0)}
  with pytest.raises(checkpointing.CheckpointMismatchError) as error:
    ckpt.restore_newest_intact(checkpointing.abstract_like(wider, SHARDING))
  ckpt.close()
  message = str(error.value)
  assert "\n" not in message and "w: saved (3, 4), now (3, 8)" in message
  assert os.path.exists(os.path.join(directory, "4"))  # nothing was moved or deleted


def test_describe_mismatch_names_missing_and_extra_arrays():
  saved = {"a": np.zeros(2), "b": np.zeros(3)}
  assert checkpointing.describe_mismatch(saved, {"a": np.zeros(2), "b": np.zeros(3)}) == ""
  text = checkpointing.describe_mismatch(saved, {"a": np.zeros(2), "c": np.zeros(3)})
  assert "1 arrays not in the checkpoint, e.g. c" in text
  assert "1 checkpoint arrays not in the model, e.g. b" in text


def test_checkpoint_from_before_objective_state_still_restores(tmp_path):
  """A TrainState checkpoint written before `objective_state` existed (no such entry on disk)
  restores into today's TrainState, the entry left {}; one with a queue restores it."""
  state = train_state.create({"params": {"w": jnp.arange(3.0)}}, optax.sgd(0.1), use_ema=False)
  old = {k: v for k, v in vars(state).items() if k != "objective_state"}
  ckpt = checkpointing.Checkpointer(str(tmp_path), 1, 3)
  ckpt.save(1, old)
  ckpt.save(2, state.replace(objective_state={"queue": jnp.ones((4, 2))}))
  ckpt.close()
  ckpt = checkpointing.Checkpointer(str(tmp_path), 1, 3)
  restored = ckpt.restore(checkpointing.abstract_like(state, SHARDING), step=1)
  assert isinstance(restored, train_state.TrainState) and restored.objective_state == {}
  jax.tree.map(np.testing.assert_array_equal, restored.params, state.params)
  with_queue = state.replace(objective_state={"queue": jnp.zeros((4, 2))})
  restored = ckpt.restore_newest_intact(checkpointing.abstract_like(with_queue, SHARDING))
  np.testing.assert_array_equal(restored.objective_state["queue"], 1.0)
  ckpt.close()


def _largest_file(step_dir):
  """The largest file of the checkpoint's arrays (its checksums file left out)."""
  return max((os.path.join(root, n) for root, _, names in os.walk(step_dir) for n in names
              if n != checkpointing.CHECKSUMS_FILE), key=os.path.getsize)


def test_every_committed_checkpoint_carries_checksums_of_its_files(tmp_path):
  directory = str(tmp_path / "checkpoints")
  _write(directory)
  for step in (2, 4):
    step_dir = os.path.join(directory, str(step))
    with open(os.path.join(step_dir, checkpointing.CHECKSUMS_FILE)) as f:
      sums = json.load(f)
    assert sorted(sums) == sorted(n for n in _files(step_dir)
                                  if n != checkpointing.CHECKSUMS_FILE)
    for name, digest in sums.items():
      with open(os.path.join(step_dir, name), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest
    assert checkpointing.verify_checksums(step_dir)


def test_flipped_bits_of_the_same_size_fall_back_to_the_previous(tmp_path, caplog):
  """The content changes, the size does not: Orbax alone would restore it (or read garbage);
  the checksum sets it aside in one warning naming the file."""
  directory = str(tmp_path / "checkpoints")
  _write(directory)
  path = _largest_file(os.path.join(directory, "4"))
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    data = bytearray(f.read())
    for i in range(0, min(size, 2048)):
      data[i] ^= 0x5A
    f.seek(0)
    f.write(data)
  assert os.path.getsize(path) == size
  ckpt = checkpointing.Checkpointer(directory, 2, 3)
  restored = ckpt.restore_newest_intact(checkpointing.abstract_like(_state(0), SHARDING))
  ckpt.close()
  assert int(restored["step"]) == 2
  name = os.path.relpath(path, os.path.join(directory, "4"))
  warnings = [r.getMessage() for r in caplog.records if "does not restore" in r.getMessage()]
  assert len(warnings) == 1 and f"ChecksumError: checksum mismatch in {name}" in warnings[0]
  assert os.path.isdir(tmp_path / "checkpoints_damaged" / "4")


def test_unreadable_checkpoint_warning_names_the_root_cause(tmp_path, caplog):
  """A truncated array file of a checkpoint without checksums (written before them): Orbax's
  own error shows only an unreadable TensorStore spec (`<bound method ...>`); the warning
  gives the innermost cause instead, in one readable line."""
  directory = str(tmp_path / "checkpoints")
  _write(directory)
  step_dir = os.path.join(directory, "4")
  os.remove(os.path.join(step_dir, checkpointing.CHECKSUMS_FILE))
  _damage(_largest_file(step_dir), "truncate")
  ckpt = checkpointing.Checkpointer(directory, 2, 3)
  restored = ckpt.restore_newest_intact(checkpointing.abstract_like(_state(0), SHARDING))
  ckpt.close()
  assert int(restored["step"]) == 2
  warnings = [r.getMessage() for r in caplog.records if "does not restore" in r.getMessage()]
  assert len(warnings) == 1 and "\n" not in warnings[0]
  assert "bound method" not in warnings[0] and "TensorStore details" not in warnings[0]
  assert "Encountered error while reading" not in warnings[0], warnings[0]


def test_root_cause_is_the_innermost_error():
  try:
    try:
      raise OSError("disk")
    except OSError as e:
      raise ValueError("wrapped") from e
  except ValueError as e:
    assert str(checkpointing.root_cause(e)) == "disk"
  assert str(checkpointing.root_cause(KeyError("alone"))) == "'alone'"


def test_rewind_sets_newer_checkpoints_aside_once(tmp_path):
  directory = str(tmp_path / "checkpoints")
  _write(directory)
  abstract = checkpointing.abstract_like(_state(0), SHARDING)
  ckpt = checkpointing.Checkpointer(directory, 2, 3)
  with pytest.raises(ValueError, match=r"resume_step=3: .* keeps no checkpoint of step 3 "
                     r"\(kept: \[2, 4\]\)"):
    ckpt.rewind(3)
  ckpt.rewind(2)
  assert ckpt.all_steps() == [2]
  assert int(ckpt.restore_newest_intact(abstract)["step"]) == 2
  assert os.path.isdir(tmp_path / "checkpoints_superseded" / "to_2" / "4")
  ckpt.save(4, _state(40))  # the new trajectory's step 4
  ckpt.rewind(2)  # the same command again: resumes the new trajectory
  assert ckpt.all_steps() == [2, 4]
  restored = ckpt.restore_newest_intact(abstract)
  ckpt.close()
  np.testing.assert_array_equal(restored["w"], _state(40)["w"])
