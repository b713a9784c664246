"""Checkpoints: damaged newest checkpoints fall back to older ones; other models are refused."""
import os

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
