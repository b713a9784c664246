"""The persistent compilation cache: where it goes, the off switch, and that a second run of
the same config loads every stored program instead of compiling it again."""
import os
import subprocess
import sys

import jax
import pytest

from s4l_jax import compilation_cache
from testing_utils import ROOT


@pytest.fixture
def updates(monkeypatch):
  calls = {}
  monkeypatch.setattr(jax.config, "update", lambda key, value: calls.__setitem__(key, value))
  return calls


def test_default_dir_is_the_user_cache(monkeypatch, tmp_path, updates):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  path = compilation_cache.configure("")
  assert path == str(tmp_path / "cache" / "s4l_jax" / "xla") and os.path.isdir(path)
  assert updates == {"jax_compilation_cache_dir": path,
                     "jax_persistent_cache_min_compile_time_secs": compilation_cache.MIN_COMPILE_S}


def test_user_settings_win_and_off_switch(monkeypatch, tmp_path, updates):
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
  monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "3")
  assert compilation_cache.configure("") == str(tmp_path / "mine")
  assert "jax_persistent_cache_min_compile_time_secs" not in updates  # the user's 3 s stays
  assert compilation_cache.configure(str(tmp_path / "flag")) == str(tmp_path / "flag")
  updates.clear()
  assert compilation_cache.configure("off") is None and not updates


def test_unwritable_dir_warns_and_runs_without(tmp_path, updates):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  assert compilation_cache.configure(str(blocker / "xla")) is None and not updates


@pytest.mark.slow
def test_second_run_compiles_nothing_new(tmp_path):
  """main.py stores its compiled programs; the same config in a fresh workdir adds none."""
  cache = tmp_path / "xla"
  # Every program stored (the suite's 0.5 s threshold would keep a machine-dependent subset).
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  def run(workdir):
    subprocess.run([sys.executable, "main.py", "--config=configs/supervised.py:dataset=digits",
                    f"--workdir={workdir}", f"--compilation_cache_dir={cache}",
                    "--config.total_steps=3", "--config.model.depth=10",
                    "--config.input.image_size=8", "--config.checkpoint_every_steps=3"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    return sorted(os.listdir(cache))
  first = run(tmp_path / "a")
  assert len(first) >= 3  # at least init, train step, eval step
  assert run(tmp_path / "b") == first
