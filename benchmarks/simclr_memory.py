"""Per-device memory of SimCLRv2 pretraining of ResNet-152 3x+SK at global batch 4096.

    PYTHONPATH=. python benchmarks/simclr_memory.py [--preset=r152_3x_sk --model_rows=...]

Analytic accounting from abstract shapes (nothing allocated); the rows `--compile_rows` names
are also compiled for XLA's memory_analysis() on this backend (25-60 s each on a 2-core CPU,
where it is no proxy for an accelerator: see benchmarks/README.md). Per device, data
parallel with replicated parameters and optimizer state (as the official TPU code):
* params: float32 parameters of the trunk, the projection head (2048w, 2048w, 128; Dense
  without bias, BN, last BN without beta) and TF2's linear head on stop_gradient(h0);
  BN statistics; the LARS momentum (`optax.lars`: one float32 buffer per parameter);
  the gradients (float32);
* saved activations: the arrays JAX's autodiff keeps for the backward pass of the loss
  (NT-Xent on the projection output over the device's 2n views, temperature 0.1, plus the
  linear head's cross-entropy), 2 views x n images of 224 px per device, global BN over the
  2n views (`activation_memory.saved_activation_bytes`). The cross-device negatives add
  2n x 2N float32 logits (2 MiB at n = 32, N = 4096), left out.
estimate = params + BN statistics + momentum + gradients + saved activations, what is live
as the backward pass starts (not a bound: a compiler may recompute cheap ops instead of
keeping them, and adds its working set). fits: estimate <= 87.5% of the device's memory
(14 of 16 GiB, the MOAM section's rule), the rest left to the compiler. sharded: the same
with the momentum and gradients split over the 4096 / n devices (ZeRO-style, reduce-scatter
of the gradients; not implemented in s4l_jax, for comparison).
Writes benchmarks/results/simclr_memory.json and simclr_memory.md.
"""
import json
import math
import os
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from activation_memory import saved_activation_bytes, tree_bytes
import render_docs
from s4l_jax import config_lib, losses, optim
from s4l_jax.models import build_model, presets

_PRESET = flags.DEFINE_string("preset", "r152_3x_sk", "presets.MODEL_PRESETS key.")
_ROWS = flags.DEFINE_list("model_rows", ["float32", "bfloat16", "bfloat16+remat"],
                          "Model dtype, +remat: every residual unit rematerialised.")
_COMPILE = flags.DEFINE_list("compile_rows", ["float32", "bfloat16+remat"],
                             "Rows whose train step is also compiled (memory_analysis()).")
_OUT = flags.DEFINE_string("output_prefix", "benchmarks/results/simclr_memory",
                           "Output path prefix (.json, .md).")

GIB = 2**30
FIT_FRACTION = 0.875
TEMPERATURE = 0.1
NUM_CLASSES = 1000
# name -> (memory per device in GiB, images per device or None: the most that fit).
DEVICES = {
    "TPU v3 core (v3-128: 4096 / 128 cores)": (16, 32),
    "TPU v4 chip (64 images, issue 12's figure)": (32, 64),
    "TPU v4 chip (v4-64 = 32 chips: 4096 / 32)": (32, 128),
    "GPU, 80 GiB (H100 / A100-80GB)": (80, None),
}


def simclr_model(preset: str, dtype: str, remat: bool):
  """The preset trunk with the pretraining heads of configs/simclrv2.py (`simclr:model_util.py`)."""
  heads = config_lib.load_config("simclrv2").stages.pretrain.model.heads  # any encoder
  cfg = dict(presets.MODEL_PRESETS[preset], dtype=dtype, remat=remat, heads=heads.to_dict())
  return build_model(cfg, NUM_CLASSES)


def memory_row(preset: str, row: str, images: int, compile_step: bool = False) -> dict:
  """Bytes of one configuration at `images` images (2 views each) per device; with
  `compile_step`, also XLA's memory_analysis() of the jitted train step (loss, gradients,
  LARS update; state donated) on this backend."""
  dtype, _, remat = row.partition("+")
  model = simclr_model(preset, dtype, remat == "remat")
  x = jax.ShapeDtypeStruct((2 * images, 224, 224, 3), jnp.float32)
  labels = jax.ShapeDtypeStruct((2 * images,), jnp.int32)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)), train=False))
  params, batch_stats = variables["params"], variables["batch_stats"]
  opt = ml_collections.ConfigDict(dict(name="lars", momentum=0.9, nesterov=False,
                                       weight_decay=1e-6, lars_trust_coefficient=0.001))
  tx = optim.make_optimizer(opt, optax.constant_schedule(1.0), params)
  opt_state = jax.eval_shape(tx.init, params)

  def loss_fn(params, batch_stats, x, labels):
    out, new = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                           mutable=["batch_stats"])
    z1, z2 = jnp.split(out["proj"], 2)
    loss = losses.nt_xent(z1, z2, TEMPERATURE)[0] + losses.softmax_xent(out["classes"], labels)
    return loss, new["batch_stats"]

  t0 = time.perf_counter()
  saved = saved_activation_bytes(lambda *a: loss_fn(*a)[0], params, batch_stats, x, labels)
  out = dict(row=row, images=images, views=2 * images,
             params=sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)),
             trunk_params=sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params["trunk"])),
             param_bytes=tree_bytes(params), stats_bytes=tree_bytes(batch_stats),
             opt_bytes=tree_bytes(opt_state), grad_bytes=tree_bytes(params),
             saved_bytes=saved, trace_s=time.perf_counter() - t0)
  if not compile_step:
    return out

  def step(params, batch_stats, opt_state, x, labels):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, x, labels)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  t0 = time.perf_counter()
  mem = jax.jit(step, donate_argnums=(0, 1, 2)).lower(
      params, batch_stats, opt_state, x, labels).compile().memory_analysis()
  out["compile_s"] = time.perf_counter() - t0
  keys = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
          "temp_size_in_bytes")
  out.update({k: int(getattr(mem, k)) for k in keys})
  # Donated state aliases the output: peak = arguments + outputs - aliased + temporaries.
  out["compiled_peak_bytes"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"]
                                - out["alias_size_in_bytes"] + out["temp_size_in_bytes"])
  out["backend"] = jax.default_backend()
  return out


def estimate_bytes(r: dict, devices: int = 1) -> int:
  """Live bytes per device; momentum and gradients split over `devices` (1: replicated)."""
  return (r["param_bytes"] + r["stats_bytes"] + (r["opt_bytes"] + r["grad_bytes"]) / devices
          + r["saved_bytes"])


def most_images(preset: str, row: str, memory_gib: float) -> dict:
  """The row of the largest n with estimate <= FIT_FRACTION of memory: a linear guess from
  n = 1, 2 (saved activations grow linearly in n, the loss's n x 2n logits aside), then
  traced at n and n + 1 and moved until n fits and n + 1 does not."""
  cap = FIT_FRACTION * memory_gib * GIB
  one, two = memory_row(preset, row, 1), memory_row(preset, row, 2)
  per_image = estimate_bytes(two) - estimate_bytes(one)
  n = max(int((cap - estimate_bytes(one)) // per_image) + 1, 1)
  at_n = memory_row(preset, row, n)
  while estimate_bytes(at_n) > cap and n > 1:
    n -= 1
    at_n = memory_row(preset, row, n)
  while estimate_bytes(above := memory_row(preset, row, n + 1)) <= cap:
    n, at_n = n + 1, above
  return at_n


def to_markdown(result) -> str:
  gib = lambda b: f"{b / GIB:.2f}"  # noqa: E731
  r0 = result["rows"][0]
  lines = [f"SimCLRv2 pretraining, {result['preset']} ({r0['trunk_params'] / 1e6:.1f}M trunk "
           f"parameters, {r0['params'] / 1e6:.1f}M with the projection and linear heads), "
           "224 px, 2 views per image, per device; GiB. Saved activations: JAX autodiff "
           "residuals (backend-independent, nothing compiled); estimate = params + BN stats "
           "+ LARS momentum + gradients + saved activations; fits: estimate <= "
           f"{FIT_FRACTION:.1%} of the device's memory.", "",
           "| device | memory | images (views) per device | model | params + stats | "
           "LARS momentum | gradients | saved activations | estimate | fits | "
           f"estimate, sharded | fits, sharded | compiled temp ({result['backend']}) | "
           f"compiled peak ({result['backend']}) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  yes = lambda b: "yes" if b else "no"  # noqa: E731
  compiled = lambda r, k: gib(r[k]) if k in r else "-"  # noqa: E731
  for r in result["rows"]:
    lines.append(f"| {r['device']} | {r['memory_gib']} | {r['images']} ({r['views']}) | "
                 f"{r['row']} | {gib(r['param_bytes'] + r['stats_bytes'])} | "
                 f"{gib(r['opt_bytes'])} | {gib(r['grad_bytes'])} | {gib(r['saved_bytes'])} | "
                 f"{gib(r['estimate_bytes'])} | {yes(r['fits'])} | "
                 f"{gib(r['sharded_estimate_bytes'])} | {yes(r['sharded_fits'])} | "
                 f"{compiled(r, 'temp_size_in_bytes')} | {compiled(r, 'compiled_peak_bytes')} |")
  gpus = ", ".join(f"{row}: {n}" for row, n in result["gpus_for_4096"].items())
  lines.append("\nGPU rows: the most images per device that fit; global batch 4096 then "
               f"needs this many GPUs: {gpus}. compiled peak = arguments + outputs - aliased "
               "(donated state) + temp.")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  result = dict(preset=_PRESET.value, fit_fraction=FIT_FRACTION, jax=jax.__version__,
                backend=jax.default_backend(), rows=[], gpus_for_4096={})
  for device, (memory_gib, images) in DEVICES.items():
    for row in _ROWS.value:
      n = images or most_images(_PRESET.value, row, memory_gib)["images"]
      if images is None:
        result["gpus_for_4096"][row] = math.ceil(4096 / n)
      r = memory_row(_PRESET.value, row, n, compile_step=row in _COMPILE.value)
      cap, sharded = FIT_FRACTION * memory_gib * GIB, estimate_bytes(r, max(4096 // r["images"], 1))
      r.update(device=device, memory_gib=memory_gib, estimate_bytes=estimate_bytes(r),
               fits=estimate_bytes(r) <= cap, sharded_estimate_bytes=sharded,
               sharded_fits=sharded <= cap)
      result["rows"].append(r)
      print(json.dumps(r))
  os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
  with open(_OUT.value + ".json", "w") as f:
    json.dump(result, f, indent=2)
  with open(_OUT.value + ".md", "w") as f:
    f.write(to_markdown(result))
  render_docs.after_write(_OUT.value + ".md")
  print(to_markdown(result))


if __name__ == "__main__":
  app.run(main)
