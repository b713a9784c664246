"""The project's CPU train step vs PyTorch's, side by side on one machine.

    pip install -e ".[bench]"      # PyTorch, CPU wheel (never a dependency of the package)
    python benchmarks/cpu_peer.py --batches=64,256 --rounds=7 [--python312=/path/bin/python]

Workload, identical on both sides: a WideResNet-28-2 (pre-activation, ReLU, BatchNorm in train
mode), 32x32x3 float32 images, 10 classes, softmax cross-entropy, SGD with Nesterov momentum
0.9, lr 0.03, weight decay 5e-4: forward + backward + update on one fixed batch. JAX side: the
project's `wrn` trunk and head (`s4l_jax.models.build_model`), one jitted step with the state
donated. PyTorch side: the WRN-28-2 of USB / FixMatch-pytorch (`wrn.py`, with ReLU in place of
its LeakyReLU(0.1) so that both sides run the same activation), `torch.set_num_threads` = all
cores, as USB trains.

Arms (each a long-lived worker process: XLA reads its flags once per process):
  s4l_jax           what `main.py` runs: `s4l_jax/cpu_flags.py` applied
  s4l_jax_no_flags  S4L_JAX_CPU_FLAGS=0: the installed jaxlib's default CPU path
  s4l_jax_one_thread  the default path with XLA's Eigen thread pool off
                    (--xla_cpu_multi_thread_eigen=false, XLA CPU's one thread-pool switch)
  s4l_jax_bf16      the default path with `model.dtype=bfloat16`
  pytorch           the PyTorch WRN-28-2
  s4l_jax_py312     (with --python312) the default path under another interpreter, e.g. jax
                    0.12 on Python 3.12 (it needs jax, flax, optax; PYTHONPATH is the repo)
Rounds are interleaved (every arm once per round, in turn) so that a drift of the machine hits
every arm alike; a round times `--steps` steps after the warm-up. Per arm and batch: medians of
wall and process CPU seconds (every thread) per step; ratio = PyTorch's seconds / the arm's
seconds (> 1: faster than PyTorch). Correctness: the jax arms start from the same weights and
batch, so their losses over the steps must agree to float32 rounding (reported).
Writes benchmarks/results/cpu_peer.json and cpu_peer.md.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import render_docs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 10
LR, MOMENTUM, WEIGHT_DECAY = 0.03, 0.9, 5e-4
JAX_ARMS = {"s4l_jax": {}, "s4l_jax_no_flags": {"S4L_JAX_CPU_FLAGS": "0"},
            "s4l_jax_one_thread": {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"},
            "s4l_jax_bf16": {}, "s4l_jax_py312": {}}


def jax_worker(batch: int, dtype: str, depth: int, width: int):
  """({phase: fn}, losses so far, versions) for the project's WRN-depth-width."""
  from s4l_jax import cpu_flags  # pylint: disable=g-import-not-at-top
  cpu_flags.apply()
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from s4l_jax.models import build_model  # pylint: disable=g-import-not-at-top

  model = build_model({"name": "wrn", "depth": depth, "width": width, "dtype": dtype},
                      NUM_CLASSES)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-1, 1, (batch, 32, 32, 3)).astype(np.float32))
  y = jnp.asarray(rng.integers(0, NUM_CLASSES, batch))
  variables = jax.jit(lambda: model.init(jax.random.PRNGKey(0), x[:1], train=False))()
  tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY),
                   optax.sgd(LR, momentum=MOMENTUM, nesterov=True))
  state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

  def loss_fn(params, batch_stats):
    out, new = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                           mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(out["classes"], y).mean()
    return loss, new["batch_stats"]

  def train_step(state):
    params, batch_stats, opt_state = state
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

  train_step = jax.jit(train_step, donate_argnums=0)
  forward = jax.jit(lambda params, batch_stats: loss_fn(params, batch_stats)[0])
  grad = jax.jit(jax.grad(lambda params, batch_stats: loss_fn(params, batch_stats)[0]))
  losses = []

  def step():
    nonlocal state
    state, loss = train_step(state)
    losses.append(float(loss))  # blocks until the step is done
  phases = {"step": step,
            "forward": lambda: forward(*state[:2]).block_until_ready(),
            "grad": lambda: jax.block_until_ready(grad(*state[:2]))}
  info = {"jax": jax.__version__, "python": platform.python_version(),
          "xla_flags": os.environ.get("XLA_FLAGS", "")}
  return phases, losses, info


def torch_wrn(depth: int = 28, width: int = 2):
  """USB's / FixMatch-pytorch's WideResNet (`wrn.py`), ReLU instead of LeakyReLU(0.1)."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  class BasicBlock(nn.Module):

    def __init__(self, in_planes, out_planes, stride, activate_before_residual=False):
      super().__init__()
      self.bn1 = nn.BatchNorm2d(in_planes, momentum=0.001, eps=0.001)
      self.relu1 = nn.ReLU()
      self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=True)
      self.bn2 = nn.BatchNorm2d(out_planes, momentum=0.001, eps=0.001)
      self.relu2 = nn.ReLU()
      self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=True)
      self.equal_in_out = in_planes == out_planes
      self.shortcut = (None if self.equal_in_out
                       else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=True))
      self.activate_before_residual = activate_before_residual

    def forward(self, x):
      if not self.equal_in_out and self.activate_before_residual:
        x = self.relu1(self.bn1(x))
      else:
        out = self.relu1(self.bn1(x))
      out = self.relu2(self.bn2(self.conv1(out if self.equal_in_out else x)))
      out = self.conv2(out)
      return torch.add(x if self.equal_in_out else self.shortcut(x), out)

  n = (depth - 4) // 6
  channels = [16, 16 * width, 32 * width, 64 * width]

  def group(in_planes, out_planes, stride, activate_before_residual=False):
    return nn.Sequential(*[BasicBlock(in_planes if i == 0 else out_planes, out_planes,
                                      stride if i == 0 else 1, activate_before_residual)
                           for i in range(n)])

  return nn.Sequential(
      nn.Conv2d(3, channels[0], 3, 1, 1, bias=True),
      group(channels[0], channels[1], 1, activate_before_residual=True),
      group(channels[1], channels[2], 2), group(channels[2], channels[3], 2),
      nn.BatchNorm2d(channels[3], momentum=0.001, eps=0.001), nn.ReLU(),
      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[3], NUM_CLASSES))


def torch_worker(batch: int, dtype: str, depth: int, width: int):
  del dtype
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  model = torch_wrn(depth, width).train()
  opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True,
                        weight_decay=WEIGHT_DECAY)
  rng = np.random.default_rng(0)
  x = torch.from_numpy(rng.uniform(-1, 1, (batch, 3, 32, 32)).astype(np.float32))
  y = torch.from_numpy(rng.integers(0, NUM_CLASSES, batch))
  losses = []

  def grad():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss

  def step():
    loss = grad()
    opt.step()
    losses.append(loss.item())

  def forward():
    with torch.no_grad():
      torch.nn.functional.cross_entropy(model(x), y)
  phases = {"step": step, "forward": forward, "grad": grad}
  info = {"torch": torch.__version__, "python": platform.python_version(),
          "threads": torch.get_num_threads()}
  return phases, losses, info


def worker(arm: str, batch: int, warmup: int, depth: int, width: int):
  """Serves rounds: reads `PHASE STEPS` per line from stdin, answers one JSON line.

  Phases: step (forward + backward + update), forward (the loss, training-mode BN, no
  gradient), grad (forward + backward, no update)."""
  make = torch_worker if arm == "pytorch" else jax_worker
  phases, losses, info = make(batch, "bfloat16" if arm.endswith("bf16") else "float32", depth,
                              width)
  for fn in phases.values():  # compiles each (jax); the step's losses start here
    for _ in range(warmup):
      fn()
  print(json.dumps(info), flush=True)
  for line in sys.stdin:
    phase, steps = line.split()
    steps = int(steps)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
      phases[phase]()
    print(json.dumps({"wall_s": (time.perf_counter() - wall) / steps,
                      "cpu_s": (time.process_time() - cpu) / steps, "losses": losses}),
          flush=True)


def start(arm: str, batch: int, args) -> subprocess.Popen:
  python = args.python312 if arm == "s4l_jax_py312" else sys.executable
  env = dict(os.environ, PYTHONPATH=ROOT, **JAX_ARMS.get(arm, {}))
  return subprocess.Popen([python, os.path.abspath(__file__), "--worker", arm, "--batch",
                           str(batch), "--warmup", str(args.warmup), "--depth", str(args.depth),
                           "--width", str(args.width)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def ask(proc: subprocess.Popen, steps: int | None = None, phase: str = "step") -> dict:
  if steps is not None:
    proc.stdin.write(f"{phase} {steps}\n")
    proc.stdin.flush()
  line = proc.stdout.readline()
  if not line:
    raise RuntimeError(f"worker {proc.args} stopped (rc {proc.wait()})")
  return json.loads(line)


def measure(batch: int, arms: list[str], args) -> dict:
  """Interleaved rounds of every arm at `batch`: per arm the medians and the losses."""
  procs = {}
  try:
    for arm in arms:  # one at a time: compiling does not overlap a neighbour's
      procs[arm] = start(arm, batch, args)
      procs[arm].info = ask(procs[arm])
    rounds = {(arm, phase): [] for arm in arms for phase in args.phases.split(",")}
    for _ in range(args.rounds):
      for arm, phase in rounds:
        rounds[arm, phase].append(ask(procs[arm], args.steps, phase))
  finally:
    for proc in procs.values():
      proc.stdin.close()
      proc.wait()
  out = {}
  medians = lambda rs: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "cpu_s")}
  for arm in arms:
    wall, cpu = medians(rounds[arm, "step"]).values()
    out[arm] = {"wall_s": wall, "cpu_s": cpu, "cpu_per_wall": cpu / wall,
                "images_per_s": batch / wall, "losses": rounds[arm, "step"][-1]["losses"],
                "phases": {phase: medians(rs) for (a, phase), rs in rounds.items() if a == arm},
                **procs[arm].info}
  for arm in arms:
    if "pytorch" in out:
      out[arm]["vs_pytorch_wall"] = out["pytorch"]["wall_s"] / out[arm]["wall_s"]
      out[arm]["vs_pytorch_cpu"] = out["pytorch"]["cpu_s"] / out[arm]["cpu_s"]
    if arm != "s4l_jax" and "s4l_jax" in out and arm.startswith("s4l_jax"):
      a, b = out["s4l_jax"]["losses"], out[arm]["losses"]
      out[arm]["first_loss_diff_vs_s4l_jax"] = abs(a[0] - b[0])  # same weights and batch
      out[arm]["max_loss_diff_vs_s4l_jax"] = max(abs(p - q) for p, q in zip(a, b))
  return out


def table(results: dict) -> str:
  rows = ["| batch | arm | versions | ms/step wall | ms/step CPU | CPU/wall | images/s | "
          "vs PyTorch wall | vs PyTorch CPU | loss diff vs s4l_jax: step 1, max |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for batch, arms in results["batches"].items():
    for arm, r in arms.items():
      versions = (f"torch {r['torch']}" if "torch" in r else f"jax {r['jax']}") + \
          f", py {r['python']}"
      diff = (f"{r['first_loss_diff_vs_s4l_jax']:.1e}, {r['max_loss_diff_vs_s4l_jax']:.1e}"
              if "max_loss_diff_vs_s4l_jax" in r else "-")
      rows.append(f"| {batch} | {arm} | {versions} | {1e3 * r['wall_s']:.0f} | "
                  f"{1e3 * r['cpu_s']:.0f} | {r['cpu_per_wall']:.2f} | "
                  f"{r['images_per_s']:.0f} | {r.get('vs_pytorch_wall', 0):.2f}x | "
                  f"{r.get('vs_pytorch_cpu', 0):.2f}x | "
                  f"{diff} |")
  return "\n".join(rows)


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return platform.processor() or platform.machine()


def phase_table(results: dict) -> str:
  """Where the time goes: wall ms of forward, forward + backward and the whole step, and the
  backward (grad - forward) and update (step - grad) by difference."""
  rows = ["| batch | arm | forward ms | backward ms | update ms | step ms | backward / forward |",
          "| --- | --- | --- | --- | --- | --- | --- |"]
  for batch, arms in results["batches"].items():
    for arm, r in arms.items():
      p = {k: 1e3 * v["wall_s"] for k, v in r["phases"].items()}
      if {"forward", "grad", "step"} <= set(p):
        rows.append(f"| {batch} | {arm} | {p['forward']:.0f} | {p['grad'] - p['forward']:.0f} "
                    f"| {p['step'] - p['grad']:.0f} | {p['step']:.0f} | "
                    f"{(p['grad'] - p['forward']) / p['forward']:.2f} |")
  return "\n".join(rows) if len(rows) > 2 else ""


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batches", default="64,256")
  parser.add_argument("--arms", default="s4l_jax,s4l_jax_no_flags,s4l_jax_bf16,pytorch")
  parser.add_argument("--depth", type=int, default=28, help="WRN depth (6n + 4).")
  parser.add_argument("--width", type=int, default=2, help="WRN width multiplier.")
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--steps", type=int, default=3, help="Timed steps per round.")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--phases", default="step", help="step[,forward,grad]: also time the "
                      "forward pass and forward + backward alone (where the time goes).")
  parser.add_argument("--python312", default="", help="Adds the s4l_jax_py312 arm.")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/cpu_peer"))
  parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
  parser.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return worker(args.worker, args.batch, args.warmup, args.depth, args.width)
  arms = args.arms.split(",") + (["s4l_jax_py312"] if args.python312 else [])
  results = {"command": " ".join(["python", "benchmarks/cpu_peer.py"] + sys.argv[1:]),
             "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
             "model": f"WRN-{args.depth}-{args.width}", "rounds": args.rounds,
             "steps_per_round": args.steps, "batches": {}}
  for batch in map(int, args.batches.split(",")):
    results["batches"][batch] = measure(batch, arms, args)
  with open(args.out + ".json", "w") as f:
    json.dump(results, f, indent=1)
  with open(args.out + ".md", "w") as f:
    f.write(f"`{results['command']}` on {os.cpu_count()} cores ({results['machine']['cpu']}), "
            f"WRN-{args.depth}-{args.width}; medians of {args.rounds} "
            f"interleaved rounds of {args.steps} steps.\n\n{table(results)}\n")
    if phase_table(results):
      f.write(f"\nPhases (wall):\n\n{phase_table(results)}\n")
  render_docs.after_write(args.out + ".md")
  print(json.dumps({b: {a: {k: r[k] for k in ("wall_s", "cpu_s") if k in r} | {
      k: r[k] for k in ("vs_pytorch_wall", "vs_pytorch_cpu") if k in r}
                        for a, r in arms.items()} for b, arms in results["batches"].items()}))
  print(table(results))
  print(phase_table(results))


if __name__ == "__main__":
  main()
