"""Per-image train-step cost of each method vs supervised, and the MOAM step-1 memory footprint.

    PYTHONPATH=. python benchmarks/step_cost.py [--wrn_depth=10 --wrn_width=2 --stream_batch=32]

Every step is `train.make_train_step` with the method's real config and objective (views on
device included), jitted and timed on random uint8 images. "images" counts forward images
per step (views x batch) times passes: supervised 1, rotation 4 views, exemplar 8 views,
VAT 3 passes (clean, power iteration, adversarial) over the images it perturbs (MOAM step 1:
the rotated unlabeled views only).
ratio = (seconds per step / images) / (supervised seconds per image); goal <= 1.15. Each
step is timed twice: the in-memory pipeline's step (crops and views computed inside it) and
the tf.data pipeline's step (fed host uint8 crops; only rotations, flips, HSV noise and
scaling inside), to separate the host-side augmentation cost from the rest. Cost is the
median over `repeats` of the process CPU seconds per step (all XLA threads): on a shared
machine wall time measures the neighbours; CPU time measures the step.
Memory of MOAM step 1 on ResNet-50 v2 x4 (filters_factor 16), 224 px, batch 8 + 8, per
model dtype, without and with `model.remat` (no arrays made): the activations the backward
pass keeps (JAX's autodiff residuals: backend-independent) and
`jax.jit(step).lower(abstract state, abstract batch).compile().memory_analysis()`.
With `--queue_steps=N`: the cost of the training loop's wait on each previous step
(`train._train` fetches step i-1's metrics after dispatching step i, so at most one step is
queued and a signal is acted on within a step): wall seconds per step of N steps dispatched
back to back (blocking at the end only) vs N steps waiting on the previous one, each fed a
fresh host batch as the loop is, alternated `repeats` times (the first row's config); the
median and the minimum over the repeats (on a shared machine the minimum is the estimate
least disturbed by other processes).
Writes benchmarks/results/step_cost.json and step_cost.md.
"""
import json
import os
import platform
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from activation_memory import saved_activation_bytes, tree_bytes
import render_docs
from s4l_jax import budget, config_lib, objectives, optim, train, train_state
from s4l_jax.data import views
from s4l_jax.models import build_model

_DEPTH = flags.DEFINE_integer("wrn_depth", 10, "WRN depth for the timing rows.")
_WIDTH = flags.DEFINE_integer("wrn_width", 2, "WRN width for the timing rows.")
_BATCH = flags.DEFINE_integer("stream_batch", 32, "Labeled (= unlabeled) batch of every method.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps per method (after 2 warm-up).")
_MEMORY = flags.DEFINE_list("memory_dtypes", ["float32", "bfloat16"],
                            "Compile the ResNet-50 x4 MOAM step with these model dtypes for "
                            "its memory footprint (empty: skip).")
_COMPILE = flags.DEFINE_bool("compile_memory", True, "Also compile each memory row for this "
                              "backend's memory_analysis() (about 2 min each on CPU).")
_METHODS = flags.DEFINE_list("rows", ["supervised", "vat", "vat_entmin", "rotation",
                                         "s4l_rotation", "s4l_exemplar", "moam_step1"],
                             "Rows (config names; moam_step1 = configs/moam.py stage 1; "
                             "supervised@N: batch N); the first is the reference.")
_QUEUE = flags.DEFINE_integer("queue_steps", 0, "Steps per timing of the per-step wait "
                              "(0: skip).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/step_cost", "Output path prefix.")

NUM_CLASSES = 10


# Stages of pipeline configs timed as rows: `<config>_<stage>` (moam_step1 = MOAM's stage 1).
PIPELINE_STAGES = {"moam_step1": ("moam", "step1"), "simclrv2_pretrain": ("simclrv2", "pretrain"),
                   "simclrv2_finetune": ("simclrv2", "finetune")}


def load_config(name: str, arg: str):
  """The config of method `name`, or of a pipeline stage in `PIPELINE_STAGES`."""
  if name in PIPELINE_STAGES:
    config, stage = PIPELINE_STAGES[name]
    return config_lib.load_config(config, arg).stages[stage]
  return config_lib.load_config(name, arg)


def method_config(name: str, dataset: str, batch: int, model: dict, unlabeled_ratio: int = 1):
  """`name`'s config at labeled batch `batch` (unlabeled: `unlabeled_ratio` x batch, where the
  method has an unlabeled stream), with `model` overrides."""
  c = load_config(name, f"dataset={dataset},labels=4000")
  c.input.labeled.batch_size = batch
  if c.input.unlabeled.batch_size:
    c.input.unlabeled.batch_size = batch * unlabeled_ratio
  c.model.update(model)
  return c


def views_per_step(c, stream: str) -> int:
  return c.input[stream].batch_size * views.copies(c.input[stream].view)


def images_per_step(c) -> int:
  """Forward images: every view once, plus 2 more passes (power iteration, adversarial) over
  the images VAT perturbs (the unlabeled views, and the labeled ones in the VAT config)."""
  n = views_per_step(c, "labeled") + views_per_step(c, "unlabeled")
  if c.objective in ("vat", "moam_step1"):
    n += 2 * views_per_step(c, "unlabeled")
    if c.loss.get("vat_apply_to_labeled", False) and c.objective == "vat":
      n += 2 * views_per_step(c, "labeled")
  return n


def build_step(c, image_shape, views_on_device=True, num_classes=NUM_CLASSES):
  """(jitted train step, `rng -> state`) with the config's real optimizer and objective."""
  model = build_model(c.model, num_classes)
  schedule = optim.make_schedule(c.lr, budget.base_learning_rate(c), 100, 1000)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *image_shape)), train=False))
  tx = optim.make_optimizer(c.optimizer, schedule, variables["params"], c.trainable)
  decay = train.ema_decay(c, 100)
  step = train.make_train_step(model, objectives.get(c.objective), tx, c, decay,
                               views_on_device)

  def make_state(rng):
    v = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    return train_state.create(v, tx, use_ema=bool(decay))
  return jax.jit(step, donate_argnums=0), make_state


def raw_batch(c, image_shape, abstract=False, views_on_device=True):
  """Random uint8 images + labels: raw images, or tf.data's host crops (K per image for a
  view of K crops: exemplar8 8, simclr2 2)."""
  out = {}
  for name in ("labeled", "unlabeled"):
    b = c.input[name].batch_size
    if not b:
      continue
    shape = (b, *image_shape)
    crops = views.resolve(c.input[name].view, c.input.crop).crops
    if not views_on_device and crops > 1:
      shape = (b, crops, *image_shape)
    if abstract:
      out[name] = {"image": jax.ShapeDtypeStruct(shape, jnp.uint8),
                   "label": jax.ShapeDtypeStruct((b,), jnp.int32)}
    else:
      rng = np.random.default_rng(0)
      out[name] = {"image": rng.integers(0, 256, shape, np.uint8),
                   "label": rng.integers(0, NUM_CLASSES, (b,)).astype(np.int32)}
  return out


def time_step(c, shape, views_on_device, repeats):
  """Median (CPU seconds, wall seconds) per step after compile + 1 warm-up step."""
  step, make_state = build_step(c, shape, views_on_device)
  state = jax.jit(make_state)(jax.random.PRNGKey(0))
  data = jax.device_put(raw_batch(c, shape, views_on_device=views_on_device))
  for _ in range(2):  # compile, warm up
    state, m = step(state, data, {})
    jax.block_until_ready(m)
  cpu, wall = [], []
  for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    state, m = step(state, data, {})
    jax.block_until_ready(m)
    cpu.append(time.process_time() - c0)
    wall.append(time.perf_counter() - t0)
  return float(np.median(cpu)), float(np.median(wall))


def time_queue(c, shape, steps: int, repeats: int) -> dict:
  """Median wall s/step of `steps` steps queued freely vs waiting on each previous step."""
  step, make_state = build_step(c, shape)
  state = jax.jit(make_state)(jax.random.PRNGKey(0))
  host = raw_batch(c, shape)
  for _ in range(2):  # compile, warm up
    state, m = step(state, jax.device_put(host), {})
  jax.block_until_ready(m)
  times = {"queued": [], "waited": []}
  for _ in range(repeats):
    for mode in times:
      t0, previous = time.perf_counter(), None
      for _ in range(steps):
        state, m = step(state, jax.device_put(host), {})
        if mode == "waited" and previous is not None:
          jax.device_get(previous)  # what train._train does each step
        previous = m
      jax.block_until_ready(m)
      times[mode].append((time.perf_counter() - t0) / steps)
  out = dict(method=c.objective, steps=steps, repeats=repeats, runs=times)
  for stat in ("median", "min"):  # min: the run least disturbed by other processes
    queued, waited = (float(getattr(np, stat)(times[m])) for m in ("queued", "waited"))
    out[stat] = dict(queued_s_per_step=queued, waited_s_per_step=waited,
                     overhead=waited / queued - 1)
  return out


def time_method(name, batch, model, repeats):
  """One row; `supervised@N` is supervised at labeled batch N (a batch-size control)."""
  name_batch = name.partition("@")
  c = method_config(name_batch[0], "folder:/unused", int(name_batch[2] or batch), model)
  shape = (c.input.image_size, c.input.image_size, 3)
  images = images_per_step(c)
  row = dict(method=name, images_per_step=images,
             views_per_step=views_per_step(c, "labeled") + views_per_step(c, "unlabeled"))
  for key, on_device in (("", True), ("tfdata_", False)):
    cpu, wall = time_step(c, shape, on_device, repeats)
    row.update({f"{key}step_s": cpu, f"{key}wall_s": wall,
                f"{key}ms_per_image": 1e3 * cpu / images})
  return row


def moam_memory(dtype: str, remat: bool, compile_memory: bool, batch=8):
  """Memory of MOAM step 1, ResNet-50 v2 x4 @224 px, per-device batch batch+batch.

  The ImageNet step of the tf.data pipeline: fed uint8 host crops, rotations on device.
  Saved activations from JAX's residuals; with `compile_memory`, also the compiled
  memory_analysis() of the whole step on this backend.
  """
  c = load_config("moam_step1", "dataset=imagenet2012,labels=10pct")
  c.input.labeled.batch_size = c.input.unlabeled.batch_size = batch
  c.model.dtype, c.model.remat = dtype, remat
  shape = (224, 224, 3)
  step, make_state = build_step(c, shape, views_on_device=False, num_classes=1000)
  state = jax.eval_shape(make_state, jax.random.PRNGKey(0))
  raw = raw_batch(c, shape, abstract=True, views_on_device=False)
  loss_fn = train.make_loss_fn(build_model(c.model, 1000), objectives.get(c.objective), c,
                               views_on_device=False)
  t0 = time.perf_counter()
  saved = saved_activation_bytes(lambda p, s, b: loss_fn(p, s, b, jax.random.PRNGKey(0), {})[0],
                                 state.params, state.batch_stats, raw)
  params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
  out = dict(model="resnet50v2 filters_factor=16", dtype=dtype, remat=remat, image_size=224,
             batch=f"{batch}+{batch}", params=params, backend=jax.default_backend(),
             state_bytes=tree_bytes(state), grad_bytes=tree_bytes(state.params),
             saved_bytes=saved, trace_s=time.perf_counter() - t0)
  # Live together as the backward pass starts: the state (donated, updated in place), the
  # gradients and the saved activations. An estimate, not a bound: a compiler may recompute
  # cheap ops instead of keeping them, and adds its own working set.
  out["estimate_gib"] = (out["state_bytes"] + out["grad_bytes"] + saved) / 2**30
  if not compile_memory:
    return out
  t0 = time.perf_counter()
  compiled = step.lower(state, raw).compile()
  out["compile_s"] = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  keys = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
          "temp_size_in_bytes", "generated_code_size_in_bytes")
  out.update({k: int(getattr(mem, k)) for k in keys if mem is not None and hasattr(mem, k)})
  # Donated state aliases the output: peak = arguments + outputs - aliased + temporaries.
  out["peak_gib"] = (out.get("argument_size_in_bytes", 0) + out.get("output_size_in_bytes", 0)
                     - out.get("alias_size_in_bytes", 0) + out.get("temp_size_in_bytes", 0)
                     ) / 2**30
  return out


def to_markdown(result) -> str:
  lines = []
  if result["methods"]:
    lines += [f"Model {result['model']}, batch {result['batch']}+{result['batch']} (labeled + "
              f"unlabeled where the method has one), {result['backend']} backend.", "",
              "| method | images/step | CPU s/step | CPU ms/image | ratio vs supervised | "
              "CPU s/step, tf.data step | ratio, tf.data step |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
  for r in result["methods"]:
    lines.append(f"| {r['method']} | {r['images_per_step']} | {r['step_s']:.3f} | "
                 f"{r['ms_per_image']:.3f} | {r['ratio']:.2f}x | {r['tfdata_step_s']:.3f} | "
                 f"{r['tfdata_ratio']:.2f}x |")
  if result.get("queue"):
    q = result["queue"]
    lines += [""] if lines else []
    for stat in ("median", "min"):
      t = q[stat]
      lines.append(f"Per-step wait ({q['method']}, {q['steps']} steps x {q['repeats']}, {stat}): "
                   f"{t['queued_s_per_step'] * 1e3:.2f} ms/step queued freely, "
                   f"{t['waited_s_per_step'] * 1e3:.2f} ms/step waiting on each previous step "
                   f"({100 * t['overhead']:+.1f}%).")
  if result.get("memory"):
    mem = result["memory"]
    m0 = mem[0]
    gib = lambda m, k: f"{m[k] / 2**30:.2f}" if k in m else "-"
    lines += [""] if lines else []
    lines += [f"MOAM step 1, {m0['model']}, {m0['image_size']} px, batch {m0['batch']} "
              f"per device ({m0['params'] / 1e6:.1f}M params); GiB. Saved activations: JAX "
              f"autodiff residuals (backend-independent); estimate = state + gradients + "
              f"saved activations; compiled columns: memory_analysis() on {m0['backend']}.", "",
              "| model dtype | remat | state | gradients | saved activations | estimate | "
              "compiled temp | compiled peak |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in mem:
      peak = f"{m['peak_gib']:.2f}" if "peak_gib" in m else "-"
      lines.append(f"| {m['dtype']} | {m['remat']} | {gib(m, 'state_bytes')} | "
                   f"{gib(m, 'grad_bytes')} | {gib(m, 'saved_bytes')} | "
                   f"{m['estimate_gib']:.2f} | {gib(m, 'temp_size_in_bytes')} | {peak} |")
    lines.append("\ncompiled peak = arguments + outputs - aliased (donated state) + temp.")
  return "\n".join(lines) + "\n"


def write(result):
  os.makedirs(os.path.dirname(_OUT.value), exist_ok=True)
  with open(_OUT.value + ".json", "w") as f:
    json.dump(result, f, indent=2)
  with open(_OUT.value + ".md", "w") as f:
    f.write(to_markdown(result))
  render_docs.after_write(_OUT.value + ".md")


def main(argv):
  del argv
  result = dict(model=f"wrn-{_DEPTH.value}-{_WIDTH.value}", batch=_BATCH.value,
                backend=jax.default_backend(), devices=jax.device_count(),
                machine=platform.machine(), cpus=os.cpu_count(), jax=jax.__version__,
                methods=[], goal_ratio=1.15)
  result["memory"] = []
  for dtype in _MEMORY.value:  # first: the slowest compiles; results are written as they come
    for remat in (False, True):
      result["memory"].append(moam_memory(dtype, remat, _COMPILE.value))
      write(result)
  model = dict(name="wrn", depth=_DEPTH.value, width=_WIDTH.value)
  if _QUEUE.value:
    c = method_config(_METHODS.value[0], "folder:/unused", _BATCH.value, model)
    result["queue"] = time_queue(c, (c.input.image_size,) * 2 + (3,), _QUEUE.value,
                                 _REPEATS.value)
    write(result)
  for name in _METHODS.value:
    result["methods"].append(time_method(name, _BATCH.value, model, _REPEATS.value))
    base = result["methods"][0]  # the first row (supervised) is the reference
    for r in result["methods"]:
      r["ratio"] = r["ms_per_image"] / base["ms_per_image"]
      r["tfdata_ratio"] = r["tfdata_ms_per_image"] / base["tfdata_ms_per_image"]
    write(result)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main)
