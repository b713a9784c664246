"""Test set-up: 8 fake CPU devices so that sharding is exercised on one CPU.

Most test time is XLA compilation of the same small programs in different tests and in the
`main.py` subprocesses some tests start (each run builds new jitted closures); a per-session
persistent compilation cache, passed to subprocesses through the environment, reuses them.
"""
import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="s4l_jax_xla_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# The CPU path main.py takes by default (tests that set XLA_FLAGS themselves apply it too).
from s4l_jax import cpu_flags  # pylint: disable=g-import-not-at-top,wrong-import-position
cpu_flags.apply()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(name="x64")
def x64_fixture():
  """Float64 arrays (jax_enable_x64) for one test, restored after it."""
  prev = jax.config.read("jax_enable_x64")
  jax.config.update("jax_enable_x64", True)
  yield
  jax.config.update("jax_enable_x64", prev)
