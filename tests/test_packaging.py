"""The installable tool: a wheel built from this tree, installed in a fresh venv outside the
checkout, trains from its console script with the packaged config and evaluates the export."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from testing_utils import ROOT

pytestmark = pytest.mark.slow  # builds a wheel, makes a venv, trains 20 steps


def _run(args, **kwargs):
  proc = subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def test_wheel_trains_from_its_console_script_outside_the_checkout(tmp_path):
  source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info
  shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
      ".git", ".venv", "workdirs", "build", "*.egg-info", "__pycache__"))
  _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", str(tmp_path / "dist"), str(source)])
  wheel, = (tmp_path / "dist").glob("s4l_jax-*.whl")
  venv = tmp_path / "venv"
  _run([sys.executable, "-m", "venv", str(venv)])
  # The dependencies from this interpreter (a path added by a .pth file: its own .pth files,
  # e.g. this checkout's editable install, are not processed), the package from the wheel.
  site = _run([str(venv / "bin" / "python"), "-c",
               "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
  with open(os.path.join(site, "dependencies.pth"), "w") as f:
    f.write(sysconfig.get_paths()["purelib"] + "\n")
  _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
        str(wheel)])
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  outside = tmp_path / "elsewhere"
  outside.mkdir()
  where = _run([str(venv / "bin" / "python"), "-c", "import s4l_jax; print(s4l_jax.__file__)"],
               cwd=outside, env=env).stdout.strip()
  assert where.startswith(str(venv)), where
  _run([str(venv / "bin" / "s4l-train"), "--config=supervised:dataset=digits,steps=20",
        "--workdir=w", "--compilation_cache_dir=off"], cwd=outside, env=env)
  with open(outside / "w" / "results.json") as f:
    results = json.load(f)
  assert results["steps"] == 20
  scored = _run([str(venv / "bin" / "s4l-evaluate"), "--export_dir=w/export",
                 "--dataset=digits"], cwd=outside, env=env).stdout
  assert json.loads(scored.strip().splitlines()[-1])["top1"] == pytest.approx(results["top1"])
