"""The persistent XLA compilation cache, on by default: a re-run, the next stage of a
pipeline or a second run with the same shapes loads compiled programs instead of compiling.

`configure("")` uses `JAX_COMPILATION_CACHE_DIR` when the user set it, else
`$XDG_CACHE_HOME/s4l_jax/xla` (default `~/.cache/s4l_jax/xla`); `configure("off")` leaves
jax's default (no persistent cache); any other value is the directory. Programs that compile
in under `MIN_COMPILE_S` seconds are not stored (jax's default is 1 s).
"""
import os

from absl import logging

OFF = "off"
MIN_COMPILE_S = 0.5


def default_dir() -> str:
  """`$XDG_CACHE_HOME/s4l_jax/xla`, or `~/.cache/s4l_jax/xla`."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "s4l_jax", "xla")


def configure(cache_dir: str = "") -> str | None:
  """Points jax's persistent compilation cache at `cache_dir` (see the module docstring) before
  anything compiles; returns the directory used, or None (off, or not writable: a warning)."""
  import jax  # pylint: disable=g-import-not-at-top
  if cache_dir == OFF:
    return None
  path = cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR") or default_dir()
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    logging.warning("No compilation cache (%s is not writable: %s); compiling every run", path, e)
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
  return path
