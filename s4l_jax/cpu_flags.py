"""XLA flags that make training faster on CPU; `main.py` applies them before jax starts.

jaxlib 0.10-0.12 send every convolution of a CPU program to YNNPACK, which runs one
convolution on one thread; with `individual_convolution` taken out of the YNN fusion types,
XLA's own (Eigen) convolution runs it on every core. Measured on 2 cores
(`benchmarks/cpu_peer.py`, `benchmarks/results/cpu_peer.md`: the `s4l_jax_no_flags` rows), a
WRN-28-2 training step is faster, with the same losses to float32 rounding. The flags only change how the CPU
compiler lowers convolutions, so they are skipped where an accelerator plugin is installed
or `JAX_PLATFORMS` names no `cpu`.

Off with `S4L_JAX_CPU_FLAGS=0`; a flag the user's own `XLA_FLAGS` sets is left as it is.
"""
import importlib.util
import os

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)
OFF_SWITCH = "S4L_JAX_CPU_FLAGS"
# jax's accelerator plugins: with one installed, the default backend is not the CPU.
ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
                       "jax_rocm7_plugin", "libtpu")


def _flag_name(flag: str) -> str:
  return flag.split("=", 1)[0]


def cpu_is_the_platform(environ=os.environ) -> bool:
  """Whether jax will train on the CPU: `JAX_PLATFORMS` starts with cpu, or is unset and no
  accelerator plugin is installed."""
  platforms = environ.get("JAX_PLATFORMS", "").strip().lower()
  if platforms:
    return platforms.split(",")[0] == "cpu"
  return not any(importlib.util.find_spec(name) for name in ACCELERATOR_PLUGINS)


def apply(environ=os.environ) -> list[str]:
  """Adds each of `CPU_FLAGS` that `environ['XLA_FLAGS']` does not set (by name) to it, when
  training runs on the CPU and `S4L_JAX_CPU_FLAGS` is not 0; returns the flags added.

  Must run before jax initialises its backends (XLA reads `XLA_FLAGS` once)."""
  if environ.get(OFF_SWITCH, "1") == "0" or not cpu_is_the_platform(environ):
    return []
  current = environ.get("XLA_FLAGS", "").split()
  given = {_flag_name(flag) for flag in current}
  added = [flag for flag in CPU_FLAGS if _flag_name(flag) not in given]
  if added:
    environ["XLA_FLAGS"] = " ".join(current + added)
  return added
