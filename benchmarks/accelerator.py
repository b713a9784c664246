"""The accelerator protocol (issue 15, item 3): one command, one JSON and one Markdown table.

    PYTHONPATH=. python benchmarks/accelerator.py --data=device_carry/cifar10_jpeg.tar.gz
    PYTHONPATH=. python benchmarks/accelerator.py --smoke --output=/tmp/acc/accelerator  # CPU

Three phases inside one wall-clock budget (`--budget_s`, 540 s = 9 minutes on one H100/H200);
each phase's deadline is a cap, and a phase that ends early hands its time on:
  tests       pytest on the accelerator over `TESTS` (files that need no TensorFlow), minus the
              tests that assume 8 devices; float32 matmuls at full precision
              (JAX_DEFAULT_MATMUL_PRECISION=highest: the tolerances were written for CPU float32,
              and a GPU's default TF32 would fail them without any bug).
  throughput  a subprocess that compiles every row (`step_cost.build_step`: the method's real
              config, optimizer and objective) in parallel threads while the tests run, then times
              them once the tests are done: ResNet-50 v2 supervised bf16 at 224 px (images/s, MFU
              = 3 x forward FLOPs x images/s / the chip's dense bf16 peak, `PEAK_BF16_TFLOPS`),
              S4L-Rotation (ResNet-50 v2), SimCLRv2 pretraining (ResNet-50 v1), MOAM step 1
              (ResNet-50 v2 x4, bf16 + remat, 8 + 8 images: compiled peak memory, fits 16 GiB?),
              and the WRN-28-2 step of every label-efficiency method (which sizes the budget).
  label efficiency   `label_efficiency.py`, the harness, one invocation per label count and
              method, all in parallel on the one device: supervised, S4L-Rotation, VAT+EntMin,
              FixMatch, SimCLRv2 (pretrain + fine-tune) on WRN-28-2 bf16, CIFAR-10 (the JPEG
              tree) at 4,000 and 250 labels, one seed, every method (every SimCLRv2 stage) the
              same step budget `le_steps`: the most steps the measured WRN-28-2 step times fit
              in the time left. Runs still training at the deadline are stopped (re-running the
              command resumes them) and reported as unfinished.
Writes OUT.json and OUT.md (`--output`) after every phase.
`--smoke`: the same phases on CPU with tiny sizes (a fake 10-class folder of digits, WRN-10-1
rows at 16 px, 4-step runs at 40 labels, one fast test file), for CI.
"""
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # device shared by processes

from absl import app, flags  # pylint: disable=g-import-not-at-top,wrong-import-position

import label_efficiency as le  # pylint: disable=g-import-not-at-top,wrong-import-position
import render_docs  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SMOKE = flags.DEFINE_bool("smoke", False, "CPU, tiny sizes (CI).")
_DATA = flags.DEFINE_string("data", "device_carry/cifar10_jpeg.tar.gz",
                            "CIFAR-10 JPEG tarball or folder tree (train/, test/); unused with "
                            "--smoke (a fake digits folder).")
_OUT = flags.DEFINE_string("output", "", "Output prefix (default benchmarks/results/accelerator; "
                           "with --smoke WORK_DIR/accelerator).")
_WORK = flags.DEFINE_string("work_dir", "/tmp/accelerator", "Data, run directories, logs.")
_BUDGET = flags.DEFINE_integer("budget_s", 0, "Wall-clock budget (0: 540; --smoke 600, "
                             "a cap for loaded CI machines).")
_LE_STEPS = flags.DEFINE_integer("le_steps", 0, "Steps per run (0: fit the budget from the "
                                 "measured step times; --smoke: 4).")
_LE_LABELS = flags.DEFINE_list("le_labels", [], "Label counts (default 4000,250; --smoke 40).")
_WORKER = flags.DEFINE_string("worker", "", "Internal: `throughput` runs that phase.")
_WORKER_OUT = flags.DEFINE_string("worker_out", "", "Internal: the worker's JSON.")
_QUIET = flags.DEFINE_string("quiet_flag", "", "Internal: time once this file exists.")
_DEADLINE = flags.DEFINE_float("deadline", 0.0, "Internal: the worker's time.time() deadline.")

LE_METHODS = ("supervised", "s4l_rotation", "vat_entmin", "fixmatch", "simclrv2")
LE_MODEL = "depth=28,width=2,dtype=bfloat16"
LE_BATCH, LE_EVALS = 64, 10
LE_SAFETY = 0.6  # of the time left: several processes share one device; evals, host work
LE_FIXED_S = 30.0  # per stage: imports, JPEG decode, evals, export, final test (besides compile)
# The steps each method times per run step (SimCLRv2: a pretraining and a fine-tuning stage).
LE_KINDS = {"supervised": ("supervised",), "s4l_rotation": ("s4l_rotation",),
            "vat_entmin": ("vat_entmin",), "fixmatch": ("fixmatch",),
            "simclrv2": ("simclrv2_pretrain", "simclrv2_finetune")}
# Published test top-1 % (WRN-28-2, CIFAR-10) at (method, labels) as (value, source).
ANCHORS = {
    ("supervised", "4000"): (79.74, "Oliver et al. 2018 (error 20.26)"),
    ("vat_entmin", "4000"): (86.87, "Oliver et al. 2018 (error 13.13)"),
    ("fixmatch", "4000"): (95.74, "Sohn et al. 2020 (error 4.26)"),
    ("supervised", "250"): (44.04, "USB classic CV (error 55.96)"),
    ("fixmatch", "250"): (94.93, "Sohn et al. 2020 (error 5.07)"),
}
# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, by a substring of jax's device_kind;
# NVIDIA's datasheets give the sparse figure, twice these (H100 SXM / H200: 1,979).
# (https://www.nvidia.com/en-us/data-center/h100/ and .../h200/: "with sparsity; specifications
# 1/2 lower without"); the first key found in device_kind wins.
PEAK_BF16_TFLOPS = (
    ("H200 NVL", 835.5, "NVIDIA H200 datasheet: NVL BF16 1,671 TFLOPS with sparsity"),
    ("H200", 989.4, "NVIDIA H200 datasheet: SXM BF16 1,979 TFLOPS with sparsity"),
    ("H100 PCIe", 756.5, "NVIDIA H100 datasheet: PCIe BF16 1,513 TFLOPS with sparsity"),
    ("H100 NVL", 835.5, "NVIDIA H100 datasheet: NVL BF16 1,671 TFLOPS with sparsity"),
    ("H100", 989.4, "NVIDIA H100 datasheet: SXM BF16 1,979 TFLOPS with sparsity"),
)
# pytest on the device: no TensorFlow, no subprocess trainings, no 8-device assumptions.
TESTS = ("tests/test_losses.py", "tests/test_vat.py", "tests/test_optim.py",
         "tests/test_objectives.py", "tests/test_objectives_s4l.py",
         "tests/test_objectives_simclr.py", "tests/test_objectives_supervised.py",
         "tests/test_objectives_vat.py", "tests/test_randaugment.py", "tests/test_models.py")
SMOKE_TESTS = ("tests/test_losses.py::test_nt_xent_matches_reference",)
TESTS_WORKERS = 8  # pytest-xdist processes where it is installed (the GPU image has it)
TESTS_DESELECT = "not across_devices and not sharded"


def peak_bf16(device_kind: str):
  """(TFLOP/s, source) of the first `PEAK_BF16_TFLOPS` entry in `device_kind`, else None."""
  for key, tflops, source in PEAK_BF16_TFLOPS:
    if key.lower() in device_kind.lower():
      return tflops, source
  return None


def parse_model(spec: str) -> dict:
  """`depth=28,width=2,dtype=bfloat16` -> {'depth': 28, 'width': 2, 'dtype': 'bfloat16'}."""
  out = {}
  for item in filter(None, spec.split(",")):
    k, _, v = item.partition("=")
    out[k] = int(v) if v.lstrip("-").isdigit() else v
  return out


def le_steps(step_s: dict, seconds: float, num_label_counts: int, evals: int,
             max_steps: int = 100_000) -> int:
  """Steps per run so that every run, all sharing one device, fits `LE_SAFETY x seconds`.

  `step_s`: seconds per step of each `LE_KINDS` kind. Every label count runs every method,
  so one step of all runs costs `num_label_counts x` the sum over kinds. Rounded down to a
  multiple of `evals`, at least `evals`.
  """
  per_step = num_label_counts * sum(step_s[k] for kinds in LE_KINDS.values() for k in kinds)
  steps = int(LE_SAFETY * max(seconds, 0.0) / per_step) // evals * evals
  return min(max(steps, evals), max_steps)


# ---------------------------------------------------------------------------------------------
# Throughput (runs in the worker subprocess).

def throughput_rows(smoke: bool) -> list[dict]:
  """Row specs: config name, config arg, batch, unlabeled ratio, model overrides, px, ..."""
  tiny = dict(name="wrn", depth=10, width=1)
  big = lambda **kw: tiny if smoke else kw
  px = 16 if smoke else 224
  imagenet = "dataset=imagenet2012,labels=10pct"
  rows = [
      dict(row="resnet50v2 supervised", config="supervised", arg=imagenet,
           batch=4 if smoke else 128, model=dict(big(), dtype="bfloat16"), px=px, mfu=True),
      dict(row="resnet50v2 s4l_rotation", config="s4l_rotation", arg=imagenet,
           batch=2 if smoke else 32, model=dict(big(), dtype="bfloat16"), px=px),
      dict(row="resnet50v1 simclrv2_pretrain", config="simclrv2_pretrain", arg=imagenet,
           batch=2 if smoke else 32, ratio=7, model=dict(big(), dtype="bfloat16"), px=px),
      dict(row="resnet50v2x4 moam_step1", config="moam_step1", arg=imagenet, batch=8,
           model=dict(big(filters_factor=16), dtype="bfloat16", remat=True), px=px,
           fits_gib=16.0),
  ]
  model = parse_model("depth=10,width=1" if smoke else LE_MODEL)
  for kinds in LE_KINDS.values():
    for kind in kinds:
      rows.append(dict(row=f"wrn {kind}", config=kind, arg="dataset=folder:/unused,labels=4000",
                       batch=4 if smoke else LE_BATCH, ratio=le.UNLABELED_RATIO.get(kind, 1),
                       model=dict(name="wrn", **model), px=16 if smoke else 32,
                       on_device=True, le_kind=kind))
  return rows


def forward_flops(model, variables, image_shape) -> float:
  """XLA's FLOP count of one image's inference forward pass (`Lowered.cost_analysis`)."""
  import jax  # pylint: disable=g-import-not-at-top
  x = jax.ShapeDtypeStruct((1, *image_shape), "float32")
  cost = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x).cost_analysis()
  return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def _prepare(spec):
  """Builds, lowers and returns what a row needs (tracing stays in the calling thread)."""
  import jax  # pylint: disable=g-import-not-at-top
  import step_cost  # pylint: disable=g-import-not-at-top
  from s4l_jax.models import build_model  # pylint: disable=g-import-not-at-top
  c = step_cost.load_config(spec["config"], spec["arg"])
  c.input.labeled.batch_size = spec["batch"]
  if c.input.unlabeled.batch_size:
    c.input.unlabeled.batch_size = spec["batch"] * spec.get("ratio", 1)
  c.input.image_size = spec["px"]
  c.model.update(spec["model"])
  on_device = spec.get("on_device", False)  # the ImageNet rows: the tf.data step
  classes = 10 if on_device else 1000
  shape = (spec["px"], spec["px"], 3)
  step, make_state = step_cost.build_step(c, shape, on_device, num_classes=classes)
  state = jax.eval_shape(make_state, jax.random.PRNGKey(0))
  raw = step_cost.raw_batch(c, shape, abstract=True, views_on_device=on_device)
  row = dict(row=spec["row"], batch=spec["batch"],
             unlabeled_batch=c.input.unlabeled.batch_size, image_size=spec["px"],
             model=", ".join(f"{k}={v}" for k, v in spec["model"].items()),
             views_per_step=step_cost.views_per_step(c, "labeled")
             + step_cost.views_per_step(c, "unlabeled"))
  if "le_kind" in spec:
    row["le_kind"] = spec["le_kind"]
  if spec.get("mfu"):
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    row["forward_flops_per_image"] = forward_flops(build_model(c.model, classes), variables,
                                                   shape)
  lowered = step.lower(state, raw, {})
  return row, lowered, (c, shape, on_device, make_state)


def _compile(row, lowered):
  t0 = time.perf_counter()
  compiled = lowered.compile()
  row["compile_s"] = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  if mem is not None:
    b = {k: int(getattr(mem, k, 0)) for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                              "alias_size_in_bytes", "temp_size_in_bytes")}
    # Donated state aliases the output: peak = arguments + outputs - aliased + temporaries.
    row["peak_gib"] = (b["argument_size_in_bytes"] + b["output_size_in_bytes"]
                       - b["alias_size_in_bytes"] + b["temp_size_in_bytes"]) / 2**30
  return compiled


def _time(row, compiled, built, repeats):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import step_cost  # pylint: disable=g-import-not-at-top
  c, shape, on_device, make_state = built
  state = jax.jit(make_state)(jax.random.PRNGKey(0))
  data = jax.device_put(step_cost.raw_batch(c, shape, views_on_device=on_device))
  times = []
  for i in range(2 + repeats):  # 2 warm-up steps
    t0 = time.perf_counter()
    state, metrics = compiled(state, data, {})
    jax.block_until_ready(metrics)
    if i >= 2:
      times.append(time.perf_counter() - t0)
  row["step_s"] = float(np.median(times))
  row["images_per_s"] = (row["batch"] + row["unlabeled_batch"]) / row["step_s"]
  row["views_per_s"] = row["views_per_step"] / row["step_s"]


def _error(e: BaseException) -> str:
  return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def throughput_worker(smoke: bool, out_path: str, quiet_flag: str, deadline: float):
  """Compiles every row in parallel, waits for `quiet_flag`, times the rows one by one."""
  import concurrent.futures  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  device = jax.devices()[0]
  peak = peak_bf16(device.device_kind)
  result = dict(backend=jax.default_backend(), device_kind=device.device_kind,
                devices=jax.device_count(), jax=jax.__version__,
                peak_bf16_tflops=peak and peak[0], peak_source=peak and peak[1], rows=[])

  def write():
    with open(out_path + ".tmp", "w") as f:
      json.dump(result, f, indent=2)
    os.replace(out_path + ".tmp", out_path)

  prepared = []
  for spec in throughput_rows(smoke):
    try:
      prepared.append((spec, *_prepare(spec)))
    except Exception as e:  # pylint: disable=broad-except
      result["rows"].append(dict(row=spec["row"], error=_error(e)))
  write()
  with concurrent.futures.ThreadPoolExecutor(max(1, len(prepared))) as pool:
    futures = [pool.submit(_compile, row, lowered) for _, row, lowered, _ in prepared]
  compiled = []
  for (spec, row, _, built), future in zip(prepared, futures):
    result["rows"].append(row)
    try:
      compiled.append((spec, row, future.result(), built))
    except Exception as e:  # pylint: disable=broad-except
      row["error"] = _error(e)
  write()
  while quiet_flag and not os.path.exists(quiet_flag) and time.time() < deadline - 30:
    time.sleep(0.5)  # time on a quiet device: after the tests
  for spec, row, fn, built in compiled:
    try:
      _time(row, fn, built, repeats=2 if smoke else 5)
    except Exception as e:  # pylint: disable=broad-except
      row["error"] = _error(e)
    if spec.get("mfu") and "step_s" in row and peak:
      row["model_tflops"] = 3 * row["forward_flops_per_image"] * row["images_per_s"] / 1e12
      row["mfu"] = row["model_tflops"] / peak[0]
    if "fits_gib" in spec and "peak_gib" in row:
      row["fits_gib"], row["fits"] = spec["fits_gib"], row["peak_gib"] <= spec["fits_gib"]
    write()


# ---------------------------------------------------------------------------------------------
# The orchestrating process (never touches the device itself).

def fake_folder(root: str, train_per_class=30, test_per_class=10):
  """A 10-class folder tree of sklearn digits as PNGs (train/, test/): the smoke dataset."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  for label in range(10):
    images = digits.images[digits.target == label]
    for split, part in (("train", images[:train_per_class]),
                        ("test", images[train_per_class:train_per_class + test_per_class])):
      os.makedirs(os.path.join(root, split, str(label)), exist_ok=True)
      for i, image in enumerate(part):
        pixels = np.repeat((image * 255 / 16).astype(np.uint8)[..., None], 3, axis=-1)
        Image.fromarray(pixels).save(os.path.join(root, split, str(label), f"{i}.png"))
  return root


def prepare_data(data: str, root: str) -> str:
  """The folder tree of `data` (a tarball is unpacked into `root` once)."""
  if os.path.isdir(data):
    return data
  if not os.path.isfile(data):
    raise ValueError(f"--data={data!r} is neither a tarball nor a folder (copy "
                     "../shared/data/cifar10_jpeg.tar.gz to device_carry/)")
  if not os.path.isdir(os.path.join(root, "train")):
    with tarfile.open(data) as tar:
      tar.extractall(root, filter="data")
  return root


def _stop(proc, grace_s=15.0, sig=signal.SIGTERM):
  """`sig` to the process group (SIGTERM: main.py saves a checkpoint; SIGINT: pytest writes its
  report), SIGKILL after `grace_s`."""
  if proc.poll() is not None:
    return
  os.killpg(proc.pid, sig)
  try:
    proc.wait(grace_s)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait(proc, deadline: float, sig=signal.SIGTERM) -> bool:
  """Waits until `proc` ends or `deadline`; stops it then. True if it ended by itself."""
  try:
    proc.wait(max(deadline - time.time(), 0.0))
    return True
  except subprocess.TimeoutExpired:
    _stop(proc, sig=sig)
    return False


def parse_junit(path: str) -> dict:
  """{tests, failures, errors, skipped, failed: [names]} of a pytest --junitxml file."""
  root = ET.parse(path).getroot()
  suites = [root] if root.tag == "testsuite" else list(root)
  out = {k: sum(int(s.get(k, 0)) for s in suites)
         for k in ("tests", "failures", "errors", "skipped")}
  out["failed"] = [f"{case.get('classname')}::{case.get('name')}"
                   for s in suites for case in s.iter("testcase")
                   if case.find("failure") is not None or case.find("error") is not None]
  return out


def child_env(smoke: bool) -> dict:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      filter(None, [ROOT, os.environ.get("PYTHONPATH", "")])), PYTHONUNBUFFERED="1")
  if not smoke:  # tests/conftest.py hides GPUs unless CUDA_VISIBLE_DEVICES is set
    env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES") or "0"
  return env


def fmt(x, spec=".2f"):
  return "-" if x is None else format(x, spec)


def to_markdown(r: dict) -> str:
  lines = [f"# Accelerator protocol{' (smoke)' if r['smoke'] else ''}", "",
           f"Device: {r.get('device_kind', '?')} ({r.get('backend', '?')}, jax "
           f"{r.get('jax', '?')}); budget {r['budget_s']} s, wall "
           f"{fmt(r.get('wall_s'), '.0f')} s; phases (s): "
           + ", ".join(f"{k} {v:.0f}" for k, v in r["phase_s"].items()), ""]
  t = r.get("tests")
  if t:
    lines += ["## Correctness smoke (pytest on the device, no TensorFlow)", "",
              f"{t.get('tests', 0)} tests: {t.get('failures', 0)} failed, "
              f"{t.get('errors', 0)} errors, {t.get('skipped', 0)} skipped"
              f"{'' if t.get('finished') else ' (stopped at its deadline)'}; "
              f"files: {', '.join(t['files'])}; `-k '{t['deselect']}'`."]
    lines += [f"- failed: `{name}`" for name in t.get("failed", [])[:20]]
    lines.append("")
  tp = r.get("throughput")
  if tp:
    lines += ["## Throughput (one train step, `step_cost.build_step`)", "",
              f"Peak bf16 (dense): {fmt(tp.get('peak_bf16_tflops'), '.1f')} TFLOP/s "
              f"({tp.get('peak_source') or 'unknown device'}).", "",
              "| row | model | batch (+ unlabeled) | px | views/step | step ms | images/s | "
              "views/s | MFU | compiled peak GiB | compile s |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in tp["rows"]:
      if "error" in row and "step_s" not in row:
        lines.append(f"| {row['row']} | {row.get('model', '')} | error: {row['error']} "
                     "| | | | | | | | |")
        continue
      mfu = f"{100 * row['mfu']:.1f} %" if "mfu" in row else "-"
      fits = (f" ({'fits' if row['fits'] else 'does not fit'} {row['fits_gib']:.0f})"
              if "fits" in row else "")
      step_ms = fmt(row["step_s"] * 1e3, ".1f") if "step_s" in row else "-"
      lines.append(
          f"| {row['row']} | {row['model']} | {row['batch']} + {row['unlabeled_batch']} | "
          f"{row['image_size']} | {row['views_per_step']} | {step_ms} | "
          f"{fmt(row.get('images_per_s'), '.0f')} | {fmt(row.get('views_per_s'), '.0f')} | "
          f"{mfu} | {fmt(row.get('peak_gib'))}{fits} | {fmt(row.get('compile_s'), '.0f')} |")
    lines.append("")
  e = r.get("label_efficiency")
  if e:
    lines += ["## Label efficiency (CIFAR-10 JPEG tree, `label_efficiency.py`)", "",
              f"{e['model']}, batch {e['batch']} (unlabeled as the harness gives), "
              f"{e['steps']} steps per run and per SimCLRv2 stage ({e['steps_source']}), "
              f"{e['evals']} validation evals, seed {','.join(map(str, e['seeds']))}; "
              "SimCLRv2 = pretrain + fine-tune (the fine-tuned network's test top-1).", "",
              "| method | labels | test top-1 % | best val top-1 % | wall s | published "
              "top-1 % |", "| --- | --- | --- | --- | --- | --- |"]
    for row in e["rows"]:
      anchor = f"{row['anchor']:.2f} ({row['anchor_source']})" if row.get("anchor") else "-"
      if row.get("test_top1") is None:
        lines.append(f"| {row['method']} | {row['labels']} | unfinished | - | - | {anchor} |")
        continue
      lines.append(f"| {row['method']} | {row['labels']} | {100 * row['test_top1']:.2f} | "
                   f"{100 * row['best_val_top1']:.2f} | {row['wall_s']:.0f} | {anchor} |")
  return "\n".join(lines) + "\n"


def write_report(r: dict, out: str):
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out + ".json", "w") as f:
    json.dump(r, f, indent=2)
  with open(out + ".md", "w") as f:
    f.write(to_markdown(r))
  render_docs.after_write(out + ".md")


def run_tests(smoke, work, env, deadline, result, done_flag):
  files = SMOKE_TESTS if smoke else TESTS
  junit = os.path.join(work, "tests.xml")
  parallel = []
  if not smoke:
    env = dict(env, JAX_DEFAULT_MATMUL_PRECISION="highest")
    if importlib.util.find_spec("xdist"):
      parallel = ["-n", str(TESTS_WORKERS)]
  with open(os.path.join(work, "tests.log"), "w") as log:
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *parallel, f"--junitxml={junit}", "-k", TESTS_DESELECT, *files],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    finished = _wait(proc, deadline, sig=signal.SIGINT)
  t = dict(files=list(files), deselect=TESTS_DESELECT, finished=finished, returncode=proc.poll())
  if os.path.exists(junit):
    t.update(parse_junit(junit))
  result["tests"] = t
  open(done_flag, "w").close()


def label_efficiency(smoke, data_root, work, env, deadline, result, out):
  """Sizes the budget, runs the harness per (labels, method) in parallel, collects."""
  labels_list = _LE_LABELS.value or (["40"] if smoke else ["4000", "250"])
  rows = (result.get("throughput") or {}).get("rows", [])
  step_s = {r["le_kind"]: r["step_s"] for r in rows if "le_kind" in r and "step_s" in r}
  compile_s = max([r.get("compile_s", 0.0) for r in rows if "le_kind" in r] or [0.0])
  overhead = 2 * (LE_FIXED_S + compile_s)  # SimCLRv2's two stages start one after the other
  seconds = deadline - time.time() - overhead
  fitted = (le_steps(step_s, seconds, len(labels_list), LE_EVALS)
            if len(step_s) == sum(map(len, LE_KINDS.values())) else None)
  steps = _LE_STEPS.value or (4 if smoke else fitted)
  source = ("--le_steps" if _LE_STEPS.value else "smoke" if smoke
            else f"fitted to {seconds:.0f} s x {LE_SAFETY}")
  e = dict(model="WRN-10-1" if smoke else "WRN-28-2 bf16", batch=4 if smoke else LE_BATCH,
           evals=2 if smoke else LE_EVALS, seeds=[0], steps=steps, steps_source=source,
           fitted_steps=fitted, step_s=step_s, overhead_s=overhead, rows=[])
  result["label_efficiency"] = e
  if not steps:
    e["error"] = "no step budget: the WRN-28-2 throughput rows are missing (pass --le_steps)"
    return
  model = "depth=10,width=1" if smoke else LE_MODEL
  procs = {}
  for labels in labels_list:
    for method in LE_METHODS:
      log = open(os.path.join(work, f"le_{labels}_{method}.log"), "w")
      procs[labels, method] = subprocess.Popen(
          [sys.executable, os.path.join(ROOT, "benchmarks", "label_efficiency.py"),
           f"--dataset=folder:{data_root}", f"--labels={labels}", f"--methods={method}",
           "--seeds=0", f"--steps={steps}", f"--evals={e['evals']}", f"--batch={e['batch']}",
           f"--model={model}", "--simclrv2_stages=pretrain+finetune",
           f"--runs_dir={os.path.join(work, 'le', labels)}", f"--name={labels}_{method}",
           f"--out_dir={os.path.join(work, 'le_reports')}"],
          cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
  for proc in procs.values():
    _wait(proc, deadline)
  for labels in labels_list:
    found = le.collect(le.parse_methods(list(LE_METHODS), ["0"]),
                       os.path.join(work, "le", labels))
    for method in LE_METHODS:
      anchor = ANCHORS.get((method, labels))
      row = dict(method=method, labels=labels, anchor=anchor and anchor[0],
                 anchor_source=anchor and anchor[1], test_top1=None)
      if found[method]:
        run = found[method][0]
        row.update({k: run[k] for k in ("test_top1", "val_top1", "best_val_top1", "wall_s",
                                        "images_per_s", "curve")})
      e["rows"].append(row)
  write_report(result, out)


def main(argv):
  del argv
  smoke = _SMOKE.value
  if _WORKER.value == "throughput":
    throughput_worker(smoke, _WORKER_OUT.value, _QUIET.value, _DEADLINE.value)
    return
  t_start = time.time()
  budget = _BUDGET.value or (600 if smoke else 540)
  work = _WORK.value
  out = _OUT.value or (os.path.join(work, "accelerator") if smoke
                       else os.path.join(ROOT, "benchmarks", "results", "accelerator"))
  os.makedirs(work, exist_ok=True)
  data_root = (fake_folder(os.path.join(work, "data")) if smoke
               else prepare_data(_DATA.value, os.path.join(work, "data")))
  env = child_env(smoke)
  result = dict(smoke=smoke, budget_s=budget, machine=platform.machine(), cpus=os.cpu_count(),
                command=" ".join(sys.argv), phase_s={})
  done_flag = os.path.join(work, "tests.done")
  if os.path.exists(done_flag):
    os.remove(done_flag)
  worker_json = os.path.join(work, "throughput.json")
  worker = subprocess.Popen(
      [sys.executable, os.path.abspath(__file__), "--worker=throughput", f"--smoke={smoke}",
       f"--worker_out={worker_json}", f"--quiet_flag={done_flag}",
       f"--deadline={t_start + 0.45 * budget}"], cwd=ROOT, env=env,
      stdout=open(os.path.join(work, "throughput.log"), "w"), stderr=subprocess.STDOUT,
      start_new_session=True)
  tests = threading.Thread(target=run_tests, args=(smoke, work, env, t_start + 0.28 * budget,
                                                   result, done_flag))
  tests.start()
  tests.join()
  result["phase_s"]["tests"] = time.time() - t_start
  write_report(result, out)
  t0 = time.time()
  _wait(worker, t_start + 0.45 * budget)
  if os.path.exists(worker_json):
    with open(worker_json) as f:
      result["throughput"] = json.load(f)
    result.update({k: result["throughput"][k] for k in ("backend", "device_kind", "jax")})
  result["phase_s"]["throughput"] = time.time() - t0
  write_report(result, out)
  t0 = time.time()
  label_efficiency(smoke, data_root, work, env, t_start + budget - 15, result, out)
  result["phase_s"]["label_efficiency"] = time.time() - t0
  result["wall_s"] = time.time() - t_start
  write_report(result, out)
  print(to_markdown(result))


if __name__ == "__main__":
  app.run(main)
