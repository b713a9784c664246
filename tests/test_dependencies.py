"""`pip install -e .` alone must train, export and evaluate in-memory datasets.

The test venv has the `[test]` extras (TensorFlow and what it brings, e.g. flatbuffers), which
would hide a missing base dependency. So the subprocesses here block every import that is not
provided by setup.py's `install_requires` (followed through the installed packages' own
requirements), as a venv with only the base install would.
"""
import importlib.metadata
import json
import os
import runpy
import subprocess
import sys
from unittest import mock

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs argv[1:] (a script path, or -m MODULE, then its args) with the top-level modules named
# in $S4L_BLOCKED_MODULES invisible to every finder, as if they were not installed.
BLOCKER = """
import json, os, runpy, sys
BLOCKED = frozenset(json.loads(os.environ["S4L_BLOCKED_MODULES"]))
class Hide:
  def __init__(self, finder):
    self.finder = finder
  def find_spec(self, name, path=None, target=None):
    if name.partition(".")[0] in BLOCKED:
      return None
    return self.finder.find_spec(name, path, target)
  def __getattr__(self, attr):
    return getattr(self.finder, attr)
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
if sys.argv[1] == "-m":
  sys.argv = sys.argv[2:]
  runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
else:
  sys.argv = sys.argv[1:]
  sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
  runpy.run_path(sys.argv[0], run_name="__main__")
"""


def install_requires() -> list[str]:
  """setup.py's `install_requires`, read from setup.py itself (not possibly stale metadata)."""
  with mock.patch("setuptools.setup") as setup:
    runpy.run_path(os.path.join(ROOT, "setup.py"))
  return setup.call_args.kwargs["install_requires"]


def requirement_closure(requirements) -> set[str]:
  """Canonical names of the installed distributions that `requirements` pull in.

  Follows each requirement's own `[extras]` (orbax asks for `etils[epath]`), none of ours.
  """
  seen, todo = set(), [(Requirement(r), "") for r in requirements]
  while todo:
    req, parent_extra = todo.pop()
    name = canonicalize_name(req.name)
    if req.marker and not req.marker.evaluate({"extra": parent_extra}):
      continue
    for extra in {"", *req.extras} - {e for n, e in seen if n == name}:
      seen.add((name, extra))
      try:
        todo.extend((Requirement(r), extra) for r in importlib.metadata.requires(name) or [])
      except importlib.metadata.PackageNotFoundError:
        pass  # not installed here, so not importable either
  return {name for name, _ in seen}


def blocked_modules(allowed: set[str]) -> list[str]:
  """Top-level modules of installed distributions none of which is in `allowed`."""
  allowed = allowed | {"s4l-jax"}
  return sorted(top for top, dists in importlib.metadata.packages_distributions().items()
                if top not in sys.stdlib_module_names
                and not any(canonicalize_name(d) in allowed for d in dists))


def run_blocked(args, blocked, **kwargs):
  env = dict(os.environ, S4L_BLOCKED_MODULES=json.dumps(blocked))
  return subprocess.run([sys.executable, "-c", BLOCKER, *args], capture_output=True, text=True,
                        timeout=600, cwd=ROOT, env=env, **kwargs)


def test_blocker_blocks_what_the_base_install_lacks():
  blocked = blocked_modules(requirement_closure(install_requires()))
  assert {"tensorflow", "tensorflow_datasets", "pytest"} <= set(blocked)
  assert not {"jax", "flax", "orbax", "flatbuffers", "sklearn", "PIL"} & set(blocked)
  proc = run_blocked(["-m", "s4l_jax.data.tf_views"], blocked)
  assert "No module named 'tensorflow'" in proc.stderr


@pytest.mark.slow
def test_base_install_trains_exports_and_evaluates_digits(tmp_path):
  blocked = blocked_modules(requirement_closure(install_requires()))
  workdir = str(tmp_path / "sup")
  train = run_blocked([
      "main.py", "--config=configs/supervised.py:dataset=digits", f"--workdir={workdir}",
      "--config.total_steps=2", "--config.model.depth=10", "--config.model.width=1",
      "--config.input.image_size=8", "--config.input.labeled.batch_size=16"], blocked)
  assert train.returncode == 0, train.stderr[-3000:]
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  evaluate = run_blocked(["-m", "s4l_jax.evaluate", f"--export_dir={workdir}/export",
                          "--dataset=digits"], blocked)
  assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  scores = json.loads(evaluate.stdout.strip().splitlines()[-1])
  assert abs(scores["top1"] - results["top1"]) < 1e-6
  assert abs(scores["top5"] - results["top5"]) < 1e-6
