"""s4l_jax.storage on local paths and `file://` URLs, and a whole run in a URL workdir."""
import json
import os

import ml_collections
import numpy as np
import pytest

from s4l_jax import evaluate, export, runner, storage
from testing_utils import load_config, tiny


@pytest.fixture(params=["local", "url"])
def root(request, tmp_path):
  """A directory spelled as a local path or as a `file://` URL, and its local path."""
  local = str(tmp_path / "root")
  return (local if request.param == "local" else "file://" + local), local


def test_is_remote_and_native():
  assert storage.is_remote("gs://b/x") and storage.is_remote("file:///x")
  assert not storage.is_remote("/x") and not storage.is_remote("rel/x")
  assert storage.native("file:///a/b") == "/a/b"
  assert storage.native("gs://b/x") == "gs://b/x" and storage.native("a/b") == "a/b"


def test_absolute_leaves_urls_alone(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert storage.absolute("gs://b/x") == "gs://b/x"
  assert storage.absolute("rel") == os.path.join(str(tmp_path), "rel")
  assert str(storage.as_path("gs://b/x")) == "gs://b/x"
  assert str(storage.as_path("file:///a/b")) == "/a/b"


def test_join():
  assert storage.join("gs://b/x", "y", "z.json") == "gs://b/x/y/z.json"
  assert storage.join("a", "b") == os.path.join("a", "b")


def test_makedirs_exists_isdir_listdir(root):
  path, local = root
  assert not storage.exists(path) and storage.listdir(path) == []
  storage.makedirs(storage.join(path, "b"))
  storage.makedirs(storage.join(path, "b"))  # exists already: nothing
  storage.makedirs(storage.join(path, "a"))
  assert storage.isdir(path) and os.path.isdir(os.path.join(local, "b"))
  assert storage.listdir(path) == ["a", "b"]


def test_write_and_read_text_and_bytes(root):
  path, local = root
  storage.makedirs(path)
  storage.write_text(storage.join(path, "t.json"), "old")
  storage.write_text(storage.join(path, "t.json"), '{"a": 1}')
  storage.write_bytes(storage.join(path, "b.bin"), b"\x00\xff")
  with open(os.path.join(local, "t.json")) as f:
    assert f.read() == '{"a": 1}'
  assert storage.read_text(storage.join(path, "t.json")) == '{"a": 1}'
  assert storage.read_bytes(storage.join(path, "b.bin")) == b"\x00\xff"
  assert sorted(os.listdir(local)) == ["b.bin", "t.json"]  # no temporary file left


def test_open_file_round_trips_npz(root):
  path, _ = root
  storage.makedirs(path)
  labels = np.arange(5, dtype=np.int32)
  with storage.open_file(storage.join(path, "p.npz"), "wb") as f:
    np.savez(f, labels=labels)
  with storage.open_file(storage.join(path, "p.npz"), "rb") as f, np.load(f) as loaded:
    np.testing.assert_array_equal(loaded["labels"], labels)


def test_rename_replaces_and_rmtree_deletes(root):
  path, local = root
  storage.makedirs(storage.join(path, "d"))
  storage.write_text(storage.join(path, "d", "f"), "x")
  storage.write_text(storage.join(path, "g"), "new")
  storage.write_text(storage.join(path, "h"), "old")
  storage.rename(storage.join(path, "g"), storage.join(path, "h"))
  storage.rename(storage.join(path, "d"), storage.join(path, "e"))
  assert sorted(os.listdir(local)) == ["e", "h"]
  assert storage.read_text(storage.join(path, "h")) == "new"
  storage.rmtree(storage.join(path, "e"))
  storage.rmtree(storage.join(path, "missing"))  # nothing to delete: nothing happens
  assert os.listdir(local) == ["h"]


def supervised(steps, **kw):
  config = tiny(load_config("supervised", "dataset=digits,labels=10pct"), steps=steps)
  config.update(kw)
  return config


@pytest.mark.slow
def test_run_in_a_url_workdir_writes_everything_there(tmp_path, monkeypatch):
  """Checkpoints, resume, results.json, export and its evaluation, pseudo-labels and stage
  results all land in the `file://` workdir; nothing appears under the cwd."""
  cwd, local = tmp_path / "cwd", str(tmp_path / "work")
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  url = "file://" + local
  first = runner.run(supervised(steps=2), storage.join(url, "sup"))
  # A longer run may resume (workdir.MAY_CHANGE); the seed may not, so its change is recorded.
  resumed = runner.run(supervised(steps=4, seed=1, allow_config_change=True),
                       storage.join(url, "sup"))
  assert first["resumed_from_step"] == 0 and resumed["resumed_from_step"] == 2
  sup = os.path.join(local, "sup")
  assert {"2", "4"} <= set(os.listdir(os.path.join(sup, "checkpoints")))
  assert any(n.startswith("config.before_") for n in os.listdir(sup))
  with open(os.path.join(sup, "results.json")) as f:
    assert json.load(f) == json.loads(json.dumps(resumed))
  assert sorted(os.listdir(os.path.join(sup, "export"))) == [
      "endpoints.jax", "export.json", "predict.jax", "variables"]
  scored = evaluate.evaluate_export(storage.join(url, "sup", "export"), "digits")
  assert scored["top1"] == pytest.approx(resumed["top1"], abs=1e-9)
  assert export.load_description(storage.join(url, "sup", "export"))["step"] == 4

  chain = ml_collections.ConfigDict(dict(method="chain", run_stages="all", stages=dict(
      a=supervised(steps=2), b=supervised(steps=2, teacher="@a"))))
  combined = runner.run(chain, storage.join(url, "chain"))
  assert {"pseudo_labels.npz", "pseudo_labels.json"} <= set(
      os.listdir(os.path.join(local, "chain", "b")))
  with open(os.path.join(local, "chain", "results.json")) as f:
    assert json.load(f)["stages"]["b"]["top1"] == combined["top1"]
  assert runner.run(chain, storage.join(url, "chain")) == combined  # finished: read back
  assert os.listdir(cwd) == []
