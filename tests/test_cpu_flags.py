"""The CPU XLA flags: when they apply, that the user's flags win, and that they keep results."""
import json
import os
import subprocess
import sys

import pytest

from s4l_jax import cpu_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = cpu_flags.CPU_FLAGS[0]
NAME = FLAG.split("=")[0]


def test_adds_the_flags_on_cpu_and_keeps_the_users_others():
  env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert cpu_flags.apply(env) == list(cpu_flags.CPU_FLAGS)
  assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=8", FLAG]
  assert cpu_flags.apply(env) == []  # idempotent
  assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=8", FLAG]
  empty = {"JAX_PLATFORMS": "cpu"}
  cpu_flags.apply(empty)
  assert empty["XLA_FLAGS"] == FLAG


def test_a_flag_the_user_sets_is_left_as_it_is():
  env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"{NAME}=individual_convolution"}
  assert cpu_flags.apply(env) == []
  assert env["XLA_FLAGS"] == f"{NAME}=individual_convolution"


@pytest.mark.parametrize("env", [
    {"JAX_PLATFORMS": "cpu", cpu_flags.OFF_SWITCH: "0"},  # the off switch
    {"JAX_PLATFORMS": "cuda"}, {"JAX_PLATFORMS": "tpu,cpu"}, {"JAX_PLATFORMS": "cuda,cpu"},
])
def test_off_switch_and_accelerator_platforms_add_nothing(env):
  before = dict(env)
  assert cpu_flags.apply(env) == []
  assert env == before


def test_an_installed_accelerator_plugin_means_no_cpu_flags(monkeypatch):
  real = cpu_flags.importlib.util.find_spec
  monkeypatch.setattr(cpu_flags.importlib.util, "find_spec",
                      lambda name: object() if name == "jax_cuda12_plugin" else real(name))
  assert not cpu_flags.cpu_is_the_platform({})
  assert cpu_flags.apply({}) == []
  assert cpu_flags.cpu_is_the_platform({"JAX_PLATFORMS": "cpu"})  # the user's choice wins


@pytest.mark.slow
def test_main_applies_them_before_jax_starts():
  code = ("import os, sys; sys.argv = ['main.py']; import main, jax; "
          "print(os.environ['XLA_FLAGS']); print(jax.default_backend())")
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", cpu_flags.OFF_SWITCH)}
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                       text=True, check=True).stdout.split()
  assert out == [FLAG, "cpu"]


# Three SGD steps of a small WRN from fixed weights and batch; prints the losses.
TRAIN = """
import json, jax, jax.numpy as jnp, numpy as np, optax
from s4l_jax.models import build_model
model = build_model({"name": "wrn", "depth": 10, "width": 1}, 10)
rng = np.random.default_rng(0)
x = jnp.asarray(rng.uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32))
y = jnp.asarray(rng.integers(0, 10, 8))
v = model.init(jax.random.PRNGKey(0), x, train=False)
tx = optax.sgd(0.03, momentum=0.9)
@jax.jit
def step(params, stats, opt):
  def loss_fn(p):
    out, new = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                           mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(out["classes"], y).mean(), new
  (loss, new), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
  u, opt = tx.update(g, opt, params)
  return optax.apply_updates(params, u), new["batch_stats"], opt, loss
params, stats, opt, losses = v["params"], v["batch_stats"], tx.init(v["params"]), []
for _ in range(3):
  params, stats, opt, loss = step(params, stats, opt)
  losses.append(float(loss))
print(json.dumps(losses))
"""


@pytest.mark.slow
def test_the_flags_keep_the_losses_of_the_default_path():
  """With and without the flags (the installed jaxlib accepts them: an unknown flag aborts),
  three training steps give the same losses to float32 rounding."""
  def losses(env_update):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(env_update, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
    code = "from s4l_jax import cpu_flags; cpu_flags.apply()\n" + TRAIN
    return json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                     capture_output=True, text=True).stdout)
  with_flags, without = losses({}), losses({cpu_flags.OFF_SWITCH: "0"})
  assert with_flags[0] == pytest.approx(without[0], rel=1e-6)
  assert with_flags == pytest.approx(without, rel=1e-5)
