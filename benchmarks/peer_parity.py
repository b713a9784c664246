"""Peer parity: this project's methods against USB's (`semilearn`) at equal settings, on CPU.

    mkdir -p /tmp/c10 && tar xzf ../shared/data/cifar10_jpeg.tar.gz -C /tmp/c10
    python3 -m venv /tmp/parity && /tmp/parity/bin/pip install -e ".[parity]"   # torch, semilearn
    PYTHONPATH=. python benchmarks/peer_parity.py --data=/tmp/c10 --labels=250 --steps=1000 \
        --seeds=0,1 --peer_python=/tmp/parity/bin/python --name=peer_parity

For each seed the labeled subset (this project's class-balanced draw, `subsets.split_train`,
which main.py makes from `labels=` and `seed`) and the validation images are written once as
file lists (RUNS/subsets/*.txt, paths relative to --data) that USB (`benchmarks/peer_usb.py`)
reads. Both train the
same network (WRN-depth-width), batch, unlabeled ratio, optimizer (SGD, Nesterov momentum 0.9,
lr 0.03 with FixMatch's cosine decay, no warm-up, weight decay 5e-4 on kernels), EMA of the
weights (evaluation with it), BN momentum and steps, evaluate the held-out validation images
every steps // evals steps and the test split once at the end. `ALIGNED` lists what was set on
either side to get there and `DIFFERENCES` what remains, per method, with its expected effect.

Runs are resumable: a finished run (results.json / usb.json) is skipped; RUNS/<impl>/<method>_s<seed>.
Writes <name>.json (the `peer_parity` schema of issue 23), <name>.md and <name>.png to --out_dir.
Parity: |mean difference| <= max(2 points, 2 x the larger std over seeds).
"""
import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS

import render_docs
from s4l_jax.events import read_scalars

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USB_NAMES = {"supervised": "fullysupervised", "fixmatch": "fixmatch",
             "mean_teacher": "meanteacher", "vat": "vat", "pseudo_label": "pseudolabel"}
MU = {"fixmatch": 7}  # unlabeled images per labeled one (FixMatch's paper); 1 elsewhere
LR, WEIGHT_DECAY, BN_MOMENTUM = 0.03, 5e-4, 0.99
EMA_DECAY = 0.5 ** (1 / 20)  # a half-life of 20 steps, both sides (USB's 0.999 needs ~1M steps)
WEAK = "central_crop|flip|shift"  # flip + shift by up to 4 px with reflect padding, as USB's weak
# USB's classic-CV settings of each algorithm (its config/classic_cv/<alg>/*cifar10_250*.yaml
# and get_argument defaults) and this project's loss keys set to match them.
USB_ARGS = {
    "supervised": {},
    "fixmatch": dict(p_cutoff=0.95, T=0.5, hard_label=True, ulb_loss_ratio=1.0),
    "mean_teacher": dict(ulb_loss_ratio=50.0, unsup_warm_up=0.4),
    "vat": dict(ulb_loss_ratio=0.3, vat_eps=6.0, ent_loss_ratio=0.06, unsup_warm_up=0.4,
                vat_embed=False),
    "pseudo_label": dict(p_cutoff=0.95, ulb_loss_ratio=1.0, unsup_warm_up=0.4),
}
OURS = {  # method -> (config file, --config.* overrides beyond the shared ones)
    "supervised": ("supervised.py", {}),
    "fixmatch": ("fixmatch.py", {"loss.threshold": 0.95, "loss.unlabeled_weight": 1.0}),
    "mean_teacher": ("mean_teacher.py", {
        "loss.consistency_weight": 50.0, "loss.consistency_rampup": 0.4,
        "ema_halflife_epochs": 0.0, "input.unlabeled.view": WEAK.replace("central_crop",
                                                                        "central_crop*2")}),
    # USB's VAT is VAT + EntMin on the unlabeled images; eps 6 in its normalised pixels
    # ((x - mean) / std, std ~ 0.25 of [0, 1]) is about 3 in this project's [-1, 1] pixels.
    "vat": ("vat.py", {"loss.vat_eps": 3.0, "loss.vat_weight": 0.3, "loss.entmin_weight": 0.06,
                       "loss.vat_apply_to_labeled": False,
                       "loss.vat_kl_direction": "clean_perturbed",
                       "loss.vat_normalization": "exact_eps", "input.unlabeled.view": WEAK}),
    "pseudo_label": ("pseudo_label.py", {}),
}
ALIGNED = [
    "same labeled file list and validation file list (this project's draw), unlabeled = train "
    "minus validation on both sides (USB includes the labeled images, as this project does)",
    f"WRN-depth-width with BN momentum {BN_MOMENTUM} on both (USB's WRN hard-codes torch "
    "momentum 0.001, i.e. 0.999: its running statistics would keep 37 % of their initial "
    "values after 1,000 steps)",
    "ReLU on both: USB's leaky ReLU slope 0.1 set to 0 (this project's WRN has no leaky ReLU)",
    f"SGD Nesterov momentum 0.9, lr {LR}, cos(7 pi k / 16 K) decay, no warm-up, weight decay "
    f"{WEIGHT_DECAY} on conv and dense kernels (USB: every weight except BN and biases; the "
    "same set), batch, mu",
    f"evaluation with an EMA of the weights, decay {EMA_DECAY:.4f} (half-life 20 steps) on both",
    "weak view: flip + random translation by up to 4 px with reflect padding",
]
DIFFERENCES = {
    "*": [
        "pixels: USB normalises by CIFAR-10's mean / std, this project maps to [-1, 1] "
        "(a per-channel affine map: no effect expected after the first BN)",
        "WRN details: USB's first block activates before the residual and the first units of "
        "blocks 2-3 convolve the un-normalised input (FixMatch's WRN), its root conv has a "
        "bias, kaiming-normal init, final BN eps 1e-3, others 1e-5; here a plain pre-activation "
        "WRN, glorot-uniform init, BN eps 1e-3 (a few tenths of a point either way expected)",
        "USB's EMA starts at the initial weights without debiasing; here the same "
        "(no effect at a half-life of 20 steps)",
        "USB's EMA averages parameters only and evaluates with the live model's BN statistics; "
        "here the same",
    ],
    "fixmatch": ["strong view: USB's RandAugment applies 3 ops (AutoAugment ranges, a random "
                 "magnitude each) then Cutout of up to half the side; here 2 ops (FixMatch "
                 "paper's Table 12) and Cutout (half the side); the op count is not yet a "
                 "config value here",
                 "USB runs labeled, weak and strong images in one batch (use_cat), as here"],
    "mean_teacher": ["ramp-up of the consistency weight: USB linear over the first 40 %, here "
                     "the paper's sigmoid exp(-5 (1 - t)^2) over 40 % (less weight early here)",
                     "USB's student sees the unlabeled copy in its own forward pass with frozen "
                     "BN statistics; here labeled and unlabeled share one pass"],
    "vat": ["USB's ramp-up of the VAT weight (linear over 40 %); here none (more weight early)",
            "eps matched only approximately (6 in normalised pixels vs 3 in [-1, 1] pixels)"],
    "pseudo_label": ["different algorithms under one name: USB's pseudo-label is online "
                     "(Lee 2013: hard labels of the current model above 0.95 confidence, weight "
                     "ramped over 40 %); this project's is S4L's offline row (a supervised "
                     "teacher labels every train image once, a student retrains on them): no "
                     "parity is expected, the row shows the two recipes side by side"],
}


def write_subsets(data: str, labels: str, seed: int, out_dir: str) -> tuple[str, str]:
  """RUNS/subsets/{labeled_s<seed>,validation_s<seed>}.txt: this project's split of the train
  images for `labels` and `seed` (`subsets.split_train`, what main.py draws), as paths
  relative to `data`, for USB to read."""
  from s4l_jax.data import datasets, sources, subsets  # pylint: disable=g-import-not-at-top
  paths = [os.path.join(out_dir, f"{kind}_s{seed}.txt") for kind in ("labeled", "validation")]
  if all(map(os.path.exists, paths)):
    return tuple(paths)
  os.makedirs(out_dir, exist_ok=True)
  dataset = f"folder:{data}"
  train = sources.load_split(dataset, "train")
  split = subsets.split_train(train.labels, labels_spec=labels, seed=seed,
                              validation_spec=datasets.get(dataset).validation,
                              num_classes=len(train.class_names), dataset=dataset)
  for path, indices in zip(paths, (split.labeled, split.validation)):
    with open(path + ".tmp", "w") as f:
      f.write("".join(train.filenames[i] + "\n" for i in sorted(indices)))
    os.replace(path + ".tmp", path)
  return tuple(paths)


def ours_command(method: str, seed: int, workdir: str, runs: str, a: dict):
  config, extra = OURS[method]
  base = f"dataset=folder:{a['data']},labels={a['labels']},steps={a['steps']}"
  if method == "pseudo_label":
    base = f"teacher={os.path.join(runs, 's4l_jax', f'supervised_s{seed}')}/export,{base}"
  o = {"seed": seed, "model.name": "wrn", "model.depth": a["depth"], "model.width": a["width"],
       "model.bn_momentum": BN_MOMENTUM, "input.labeled.batch_size": a["batch"],
       "input.labeled.view": WEAK, "optimizer.nesterov": True,
       "optimizer.weight_decay": WEIGHT_DECAY, "lr.schedule": "fixmatch_cosine",
       "lr.base": LR, "lr.scale_batch_size": 0, "lr.warmup_epochs": 0.0,
       "ema_decay": EMA_DECAY, "eval_every_steps": a["steps"] // a["evals"],
       "log_every_steps": a["steps"] // a["evals"],  # steps_per_s: s / step for the report
       "evals.validation.rotation_average": False, "evals.test.rotation_average": False}
  if method in USB_ARGS and method not in ("supervised", "pseudo_label"):
    o["input.unlabeled.batch_size"] = a["batch"] * MU.get(method, 1)
  o.update(extra)
  fmt = lambda v: f"{v:.6g}" if isinstance(v, float) else v
  return [sys.executable, "main.py", f"--config=configs/{config}:{base}",
          f"--workdir={workdir}", *(f"--config.{k}={fmt(v)}" for k, v in o.items())]


def usb_spec(method: str, seed: int, lab_path: str, val_path: str, out: str, a: dict) -> dict:
  return dict(root=a["data"], labeled_list=lab_path, validation_list=val_path,
              algorithm=USB_NAMES[method], algorithm_args=USB_ARGS[method], seed=seed,
              steps=a["steps"], batch=a["batch"], uratio=MU.get(method, 1), ema_m=EMA_DECAY,
              lr=LR, weight_decay=WEIGHT_DECAY, depth=a["depth"], width=a["width"],
              bn_momentum=BN_MOMENTUM, leaky_relu_slope=0.0,
              eval_every=a["steps"] // a["evals"], strong_ops=3, workers=1,
              threads=a.get("peer_threads", 0), out=out)


def run_dir(runs: str, impl: str, method: str, seed: int) -> str:
  return os.path.join(runs, impl, f"{method}_s{seed}")


def run_all(a: dict, runs: str, log=print):
  """Interleaved: for each seed and method, this project's run then USB's (same CPU state)."""
  for seed in a["seeds"]:
    lab_path, val_path = write_subsets(a["data"], a["labels"], seed,
                                       os.path.join(runs, "subsets"))
    for method in a["methods"]:
      for impl in a["impls"]:
        workdir = run_dir(runs, impl, method, seed)
        done = os.path.join(workdir, "results.json" if impl == "s4l_jax" else "usb.json")
        if os.path.exists(done):
          continue
        os.makedirs(workdir, exist_ok=True)
        if impl == "s4l_jax":
          argv = ours_command(method, seed, workdir, runs, a)
        else:
          spec_path = os.path.join(workdir, "spec.json")
          with open(spec_path, "w") as f:
            json.dump(usb_spec(method, seed, lab_path, val_path, done, a), f, indent=1)
          argv = [a["peer_python"], os.path.join(ROOT, "benchmarks", "peer_usb.py"), spec_path]
        log(f"[{time.strftime('%H:%M:%S')}] {impl} {method} seed {seed}")
        with open(os.path.join(workdir, "log.txt"), "a") as f:
          rc = subprocess.call(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        log(f"[{time.strftime('%H:%M:%S')}] rc={rc} {workdir}")


def ours_stats(workdir: str) -> dict | None:
  """Final test top-1 (EMA weights when the run kept them), the validation curve, s / step."""
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    res = json.load(f)
  test = res["evals"]["test"]
  ema = "ema_top1" in test
  scalars = read_scalars(workdir)
  curve = sorted(dict(scalars.get("validation/" + ("ema_top1" if ema else "top1"), [])).items())
  rates = [v for tag, values in scalars.items() if tag.endswith("steps_per_s")
           for _, v in values[1:]]  # the first includes compilation
  return dict(test_top1=test["ema_top1" if ema else "top1"], curve=[list(c) for c in curve],
              s_per_step=1 / statistics.median(rates) if rates else res["wall_s"] / res["steps"])


def usb_stats(workdir: str) -> dict | None:
  path = os.path.join(workdir, "usb.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    res = json.load(f)
  return dict(test_top1=res["test_top1"], curve=res["curve"], s_per_step=res["s_per_step"])


def parity(ours: list[float], peer: list[float]) -> bool | None:
  """|mean(ours) - mean(peer)| <= max(0.02, 2 x the larger std over seeds); None (not
  judged) while either side has fewer than 2 seeds: one run has no spread to judge by."""
  if len(ours) < 2 or len(peer) < 2:
    return None
  return abs(statistics.mean(ours) - statistics.mean(peer)) <= max(
      0.02, 2 * max(statistics.stdev(ours), statistics.stdev(peer)))


def collect(a: dict, runs: str) -> dict:
  methods = {}
  for method in a["methods"]:
    ours = [ours_stats(run_dir(runs, "s4l_jax", method, s)) for s in a["seeds"]]
    peer = [usb_stats(run_dir(runs, "usb", method, s)) for s in a["seeds"]]
    ours_top1 = [r["test_top1"] for r in ours if r]
    peer_top1 = [r["test_top1"] for r in peer if r]
    mean = lambda rows, k: statistics.mean(r[k] for r in rows if r) if any(rows) else None
    methods[method] = dict(
        peer="usb", steps=a["steps"], seeds=a["seeds"], s4l_jax=ours_top1, peer_top1=peer_top1,
        s4l_jax_s_per_step=mean(ours, "s_per_step"), peer_s_per_step=mean(peer, "s_per_step"),
        parity=parity(ours_top1, peer_top1),
        differences=DIFFERENCES["*"] + DIFFERENCES.get(method, []),
        curves={"s4l_jax": [r["curve"] if r else None for r in ours],
                "usb": [r["curve"] if r else None for r in peer]})
  return methods


def to_markdown(settings: dict, methods: dict) -> str:
  pct = lambda xs: ("-" if not xs else f"{100 * statistics.mean(xs):.2f}" + (
      f" ± {100 * statistics.stdev(xs):.2f}" if len(xs) > 1 else "") + f" (n={len(xs)})")
  lines = [f"Peer parity, {settings['labels']} labels, WRN-{settings['depth']}-"
           f"{settings['width']}, {settings['steps']} steps, batch {settings['batch']}: final "
           "test top-1 % (EMA weights), mean ± std over seeds", "",
           "| method | s4l_jax | USB | parity | s4l_jax s/step | USB s/step |",
           "| --- | --- | --- | --- | --- | --- |"]
  for m, r in methods.items():
    verdict = {True: "yes", False: "**no**", None: "not judged (< 2 seeds)"}[r["parity"]]
    sec = lambda v: "-" if v is None else f"{v:.3f}"
    lines.append(f"| {m} | {pct(r['s4l_jax'])} | {pct(r['peer_top1'])} | {verdict} | "
                 f"{sec(r['s4l_jax_s_per_step'])} | {sec(r['peer_s_per_step'])} |")
  lines += ["", "Aligned by configuration:", ""] + [f"- {x}" for x in ALIGNED]
  lines += ["", "Remaining differences and their expected effect:", ""]
  lines += [f"- {m}: {x}" for m in ("*", *methods) for x in DIFFERENCES.get(m, [])]
  return "\n".join(lines) + "\n"


def plot(methods: dict, path: str, title: str):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 3.6), squeeze=False)
  for ax, (m, r) in zip(axes[0], methods.items()):
    for impl, color in (("s4l_jax", "C0"), ("usb", "C3")):
      for i, curve in enumerate(r["curves"][impl]):
        if curve:
          steps, vals = zip(*curve)
          ax.plot(steps, [100 * v for v in vals], color=color, marker=".",
                  linestyle=("-", "--", ":")[i % 3], label=f"{impl} seed {r['seeds'][i]}")
    ax.set_title(m)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
  axes[0][0].set_ylabel("validation top-1 % (EMA)")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


SIMCLR_REPORT = "peer_parity_simclr.json"  # benchmarks/peer_simclr.py's report, beside this one


def pretraining_methods(out_dir: str) -> dict:
  """The SimCLR entry of `peer_simclr.py`'s report in `out_dir` (its own settings: lightly,
  kNN / probe metrics), so that peer_parity.json lists every compared method; {} without it."""
  path = os.path.join(out_dir, SIMCLR_REPORT)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return {"simclr": dict(json.load(f)["methods"]["simclr"], report=SIMCLR_REPORT)}


def write_report(a: dict, runs: str, name: str, out_dir: str) -> dict:
  methods = collect(a, runs)
  settings = {k: v for k, v in a.items() if k not in ("peer_python",)}
  settings.update(lr=LR, weight_decay=WEIGHT_DECAY, bn_momentum=BN_MOMENTUM, ema_decay=EMA_DECAY,
                  mu=MU, aligned=ALIGNED)
  os.makedirs(out_dir, exist_ok=True)
  summary = dict(methods, **pretraining_methods(out_dir))
  with open(os.path.join(out_dir, name + ".json"), "w") as f:
    json.dump(dict(settings=settings, methods=summary), f, indent=1)
  md = to_markdown(settings, methods)
  with open(os.path.join(out_dir, name + ".md"), "w") as f:
    f.write(md)
  render_docs.after_write(os.path.join(out_dir, name + ".md"))
  plot(methods, os.path.join(out_dir, name + ".png"), md.splitlines()[0])
  return methods


def define_flags():
  """The command line (defined only when run as a script: the tests import this module beside
  label_efficiency.py, whose flags share names)."""
  flags.DEFINE_string("data", None, "Image folder root (train/<class>/*, test/<class>/*).")
  flags.DEFINE_string("labels", "250", "Labels spec of the draw (subsets.py).")
  flags.DEFINE_integer("steps", 1000, "Training steps of every run.")
  flags.DEFINE_list("seeds", ["0", "1"], "Seeds (labeled subset + initialisation).")
  flags.DEFINE_list("methods", list(OURS), "Methods, in run order.")
  flags.DEFINE_list("impls", ["s4l_jax", "usb"], "Implementations to run.")
  flags.DEFINE_integer("batch", 16, "Labeled batch.")
  flags.DEFINE_integer("depth", 10, "WRN depth.")
  flags.DEFINE_integer("width", 1, "WRN widen factor.")
  flags.DEFINE_integer("evals", 5, "Validation evaluations per run.")
  flags.DEFINE_string("peer_python", "", "Python with torch + semilearn.")
  flags.DEFINE_integer("peer_threads", 0, "torch threads of the USB runs (0: one per core). "
                       "On a loaded machine OpenMP's spinning makes 2 threads ~10x slower "
                       "than 1 (measured: 3.4 vs 0.25 s per WRN-10-1 step at load 11): "
                       "time only on an idle machine.")
  flags.DEFINE_string("name", "peer_parity", "Result name.")
  flags.DEFINE_string("runs_dir", "", "Run directories (default /tmp/peer_parity/<name>).")
  flags.DEFINE_string("out_dir", "", "Report directory (default benchmarks/results).")
  flags.DEFINE_bool("report_only", False, "Only collect finished runs.")


def main(argv):
  del argv
  if not FLAGS.data:
    raise app.UsageError("--data is required (an image folder root)")
  if "usb" in FLAGS.impls and not FLAGS.peer_python and not FLAGS.report_only:
    raise app.UsageError("--peer_python is required to run USB (a Python with semilearn)")
  a = dict(data=os.path.abspath(FLAGS.data), labels=FLAGS.labels, steps=FLAGS.steps,
           seeds=[int(s) for s in FLAGS.seeds], methods=FLAGS.methods, impls=FLAGS.impls,
           batch=FLAGS.batch, depth=FLAGS.depth, width=FLAGS.width, evals=FLAGS.evals,
           peer_python=FLAGS.peer_python, peer_threads=FLAGS.peer_threads)
  for m in a["methods"]:
    if m not in OURS:
      raise app.UsageError(f"Unknown method {m!r}; known: {', '.join(OURS)}")
  runs = FLAGS.runs_dir or os.path.join("/tmp/peer_parity", FLAGS.name)
  if not FLAGS.report_only:
    run_all(a, runs, log=lambda s: print(s, flush=True))
  methods = write_report(a, runs, FLAGS.name,
                         FLAGS.out_dir or os.path.join(ROOT, "benchmarks", "results"))
  print(json.dumps({m: {k: r[k] for k in ("s4l_jax", "peer_top1", "parity")}
                    for m, r in methods.items()}))


if __name__ == "__main__":
  define_flags()
  app.run(main)
