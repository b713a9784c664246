"""Test set-up: 8 fake CPU devices so that sharding is exercised on one CPU.

Most test time is XLA compilation of the same small programs in different tests (each run
builds new jitted closures); a per-session persistent compilation cache reuses them.
"""
import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="s4l_jax_xla_cache_"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
