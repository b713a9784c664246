"""One workdir, one run: the lock and the config comparison on resume."""
import json
import os

import pytest

from s4l_jax import workdir as workdir_lib
from testing_utils import load_config, tiny


def _config(**overrides):
  config = tiny(load_config("supervised", "dataset=digits,labels=10pct"), steps=4)
  config.update_from_flattened_dict(overrides)
  return config


def _started(tmp_path, config, state="results.json"):
  """A workdir that `config` started: config.json plus some run state."""
  workdir = str(tmp_path / "w")
  os.makedirs(os.path.join(workdir, "checkpoints"))
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))
  if state == "checkpoint":
    os.makedirs(os.path.join(workdir, "checkpoints", "2"))
  elif state:
    open(os.path.join(workdir, state), "w").close()
  return workdir


def test_second_lock_on_a_workdir_fails_naming_the_holder(tmp_path):
  workdir = str(tmp_path / "w")
  with workdir_lib.lock(workdir):
    with pytest.raises(ValueError, match=rf"is in use by pid {os.getpid()} on ") as error:
      with workdir_lib.lock(workdir):
        pass
    assert "\n" not in str(error.value)
  with workdir_lib.lock(workdir):  # released on exit
    pass


def test_workdir_that_is_a_file_is_refused(tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  with pytest.raises(ValueError, match="is a file, not a directory"):
    with workdir_lib.lock(str(path)):
      pass


@pytest.mark.parametrize("state", ["results.json", "pseudo_labels.npz", "checkpoint"])
@pytest.mark.parametrize("key,value", [("optimizer.weight_decay", 0.5), ("seed", 1),
                                       ("labels", "20"), ("model.width", 2),
                                       ("input.validation", "5pct"),
                                       ("input.labeled.batch_size", 8)])
def test_changed_config_on_a_started_workdir_stops(tmp_path, state, key, value):
  workdir = _started(tmp_path, _config(), state)
  with pytest.raises(ValueError) as error:
    workdir_lib.check_config(_config(**{key: value}), workdir)
  message = str(error.value)
  assert "\n" not in message and f"{key}: " in message and repr(value) in message
  assert "new --workdir" in message and "--config.allow_config_change=true" in message


@pytest.mark.parametrize("key,value", [("log_every_steps", 7), ("eval_every_steps", 3),
                                       ("checkpoint_every_steps", 5), ("keep_checkpoints", 4),
                                       ("input.eval_batch_size", 40), ("data_dir", "/x"),
                                       ("evals.test.rotation_average", True),
                                       # the recovery from a divergence (README "Resuming"):
                                       ("lr.base", 0.5), ("lr.schedule", "cosine"),
                                       ("lr.warmup_epochs", 0.0), ("total_steps", 40),
                                       ("total_epochs", 3.0), ("resume_step", 2),
                                       ("divergence_factor", 0.0)])
def test_cadence_and_recovery_keys_may_change(tmp_path, key, value):
  workdir = _started(tmp_path, _config())
  workdir_lib.check_config(_config(**{key: value}), workdir)


def test_keys_that_may_change_are_config_keys():
  """MAY_CHANGE names only keys (or sections) of the base config: no stale entry."""
  flat = workdir_lib.flat_config(_config())
  sections = {k.split(".", 1)[0] for k in flat}
  for key in workdir_lib.MAY_CHANGE:
    assert key in flat or key in sections or any(k.startswith(key + ".") for k in flat), key


def test_unstarted_workdir_takes_any_config(tmp_path):
  workdir = _started(tmp_path, _config(), state=None)  # config.json, but no step trained
  workdir_lib.check_config(_config(**{"lr.base": 0.5}), workdir)


def test_allow_config_change_warns_and_keeps_the_old_config(tmp_path, caplog):
  old = _config()
  workdir = _started(tmp_path, old)
  workdir_lib.check_config(_config(**{"seed": 5, "allow_config_change": True}), workdir)
  kept = [n for n in os.listdir(workdir) if n.startswith("config.before_")]
  assert len(kept) == 1
  with open(os.path.join(workdir, kept[0])) as f:
    assert json.load(f)["seed"] == old.seed
  assert any("seed" in r.getMessage() for r in caplog.records)


def test_paths_compare_by_location_not_spelling(tmp_path, monkeypatch):
  teacher = tmp_path / "teacher" / "export"
  teacher.mkdir(parents=True)
  workdir = _started(tmp_path, _config(teacher=str(teacher), pseudo_labels="/old/pl.npz"))
  monkeypatch.chdir(tmp_path)
  # The same teacher spelled relatively; pseudo_labels is derived from the teacher.
  workdir_lib.check_config(_config(teacher="teacher/../teacher/export"), workdir)
  with pytest.raises(ValueError, match="teacher"):
    workdir_lib.check_config(_config(teacher=str(tmp_path)), workdir)


def test_a_workdir_recorded_before_stream_sources_resumes(tmp_path):
  """config.json written before `input.<stream>.source` existed: the labeled and unlabeled
  streams drew from the sources of their names, so the config has not changed; another
  source has."""
  old = _config()
  del old.input.labeled["source"], old.input.unlabeled["source"]
  workdir = _started(tmp_path, old)
  workdir_lib.check_config(_config(), workdir)
  with pytest.raises(ValueError, match="input.unlabeled.source"):
    workdir_lib.check_config(_config(**{"input.unlabeled.source": "pseudo"}), workdir)
