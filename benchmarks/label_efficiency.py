"""Trains several methods on one dataset / label count with one model, budget and seeds.

    PYTHONPATH=. python benchmarks/label_efficiency.py --dataset=folder:/tmp/c10/cifar10 \
        --labels=4000 --methods=supervised:0+1,s4l_rotation:0+1,vat,moam --seeds=0 \
        --steps=300 --batch=16 --model=depth=10,width=2 --name=cifar10_cpu

Each method runs `main.py` as a subprocess, one after the other, in RUNS/<method>_s<seed>
(RUNS = --runs_dir, default /tmp/label_efficiency/<name>); a run with a results.json is
skipped, an unfinished one resumes from its checkpoint, and one that another invocation is
training (WORKDIR/.running) is skipped with the rest of its pipeline, so that invocations
with overlapping method lists can run in parallel. Chained pipelines:
  pseudo_label:      the same seed's supervised run is its teacher (trained first if missing);
  rotation_finetune: rotation pretraining (RUNS/rotation_s<seed>), then finetune.py from it;
  moam:              configs/moam.py, all three stages in RUNS/moam_s<seed>/step1..3;
  noisy_student:     configs/noisy_student.py with NOISY_STUDENT_ITERATIONS students, in
                     RUNS/noisy_student_s<seed>/teacher, student1, ...
  simclrv2:          configs/simclrv2.py, RUNS/simclrv2_s<seed>/pretrain, finetune, distill
                     (--simclrv2_stages=pretrain+finetune: report the fine-tuned network).
Every config gets `regime=small` (the small-data recipes) and `steps=` (the budget) as args;
every stage gets the same labeled batch (and unlabeled batch = labeled where the method has
an unlabeled stream; FixMatch: 7 x labeled, its paper's mu, and an EMA decay with a half-life
of `ema_frac` of the budget), model, step budget, `eval_every_steps = steps // evals`, plain
(not rotation-averaged) evaluation, and a warm-up of `warmup_frac` of the budget (the
presets' warm-up is in labeled epochs and would exceed a small budget).

Model selection never looks at the test split (the S4L protocol): the periodic evals are on
the validation images held out from train (`input.validation`, the dataset's default), and
the test split is scored once, at the end. Reported per run (from results.json and the
TensorBoard `validation/top1` / `validation/ema_top1` evals of the method's last stage):
final test top-1, final validation top-1, best and median-of-the-last-5 validation top-1,
wall time (all of the method's own stages, not a reused teacher), images/s; for chained
methods (moam, simclrv2, noisy_student) also each stage's final test and validation top-1. Writes
<name>.json, <name>.md and <name>.png to --out_dir (default benchmarks/results).
"""
import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

import render_docs
from s4l_jax import aggregate, events

# --dataset and --name are required (checked in main: other scripts import this module).
_DATASET = flags.DEFINE_string("dataset", None, "dataset=... of every config (required).")
_LABELS = flags.DEFINE_string("labels", "4000", "labels=... of every config.")
_METHODS = flags.DEFINE_list(
    "methods", ["supervised", "s4l_rotation"],
    "Methods in run order; `method:0+1` gives that method its own seeds. Known: "
    "supervised, pseudo_label, vat, vat_entmin, rotation_finetune, s4l_rotation, "
    "s4l_exemplar, moam, fixmatch, mean_teacher, noisy_student, simclrv2; and "
    "<method>_control (the recipe with its unlabeled loss off) for those in CONTROLS; "
    "`method@LR` (e.g. fixmatch@0.1) runs a single-stage method at learning rate LR.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Default seeds.")
_STEPS = flags.DEFINE_integer("steps", 300, "Training steps of every run (every MOAM stage).")
_BATCH = flags.DEFINE_integer("batch", 32, "Labeled batch (and unlabeled batch) of every run.")
_MODEL = flags.DEFINE_string("model", "", "Model overrides `k=v,...`, e.g. depth=10,width=2.")
_EVALS = flags.DEFINE_integer("evals", 6, "Evaluations per run (eval_every = steps // evals).")
_WARMUP = flags.DEFINE_float("warmup_frac", 0.05, "Linear warm-up as a fraction of steps.")
_NAME = flags.DEFINE_string("name", None, "Result name: OUT_DIR/<name>.* (required).")
_RUNS = flags.DEFINE_string("runs_dir", "", "Run directories (default /tmp/label_efficiency/"
                            "<name>).")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 50000, "Train-split size (the labeled set of "
                                  "pseudo-label students, for their warm-up).")
_EMA = flags.DEFINE_float("ema_frac", 0.02, "Polyak half-life (MOAM step 1) as a fraction of "
                          "steps.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only collect finished runs.")
_OUT_DIR = flags.DEFINE_string("out_dir", "", "Report directory (default benchmarks/results).")
_SIMCLRV2_STAGES = flags.DEFINE_string("simclrv2_stages", "all", "SimCLRv2's run_stages: all, "
                                       "or e.g. pretrain+finetune (report the fine-tuned net).")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Methods whose config has an unlabeled stream (its batch is set to --batch too).
UNLABELED = {"vat", "vat_entmin", "rotation", "s4l_rotation", "s4l_exemplar", "moam_step1",
             "fixmatch", "mean_teacher", "simclrv2_pretrain", "simclrv2_distill"}
# Unlabeled images per labeled image where a method's paper fixes it (FixMatch's mu).
UNLABELED_RATIO = {"fixmatch": 7}
# Stages that start from a trained network: no warm-up.
FINETUNES = {"moam_step3", "simclrv2_finetune"}
# Stages trained on every train image (ground truth + pseudo-labels).
STUDENTS = {"pseudo_label", "moam_step2", "noisy_student_student"}
KNOWN = ("supervised", "pseudo_label", "vat", "vat_entmin", "rotation_finetune",
         "s4l_rotation", "s4l_exemplar", "moam", "fixmatch", "mean_teacher", "noisy_student",
         "simclrv2")
# Methods of several stages (`@lr` sets one stage's learning rate, so they take none).
PIPELINES = ("pseudo_label", "rotation_finetune", "moam", "noisy_student", "simclrv2")
NOISY_STUDENT_ITERATIONS = 2  # students after the teacher (the issue's `iterations=2`)
# `<method>_control`: the method's own recipe (optimizer, schedule, EMA, views, streams) with
# its unlabeled loss off: the controlled baseline its gain is judged against.
CONTROLS = {"fixmatch": {"loss.unlabeled_weight": 0.0},
            "s4l_rotation": {"loss.rot_weight": 0.0},
            "s4l_exemplar": {"loss.triplet_weight": 0.0},
            "vat": {"loss.vat_weight": 0.0},
            "vat_entmin": {"loss.vat_weight": 0.0, "loss.entmin_weight": 0.0},
            "mean_teacher": {"loss.consistency_weight": 0.0}}


def parse_methods(methods, seeds):
  """['supervised:0+1', 'vat@0.1'] -> [('supervised', [0, 1]), ('vat@0.1', seeds)]."""
  out = []
  for m in methods:
    name, _, own = m.partition(":")
    recipe, at, lr = name.partition("@")
    if recipe not in KNOWN and recipe.removesuffix("_control") not in CONTROLS:
      raise ValueError(f"Unknown method {recipe!r}; known: {', '.join(KNOWN)}, and "
                       f"<method>_control for {', '.join(CONTROLS)}")
    if at and (recipe in PIPELINES or not _is_float(lr)):
      raise ValueError(f"{name!r}: `@lr` takes a number and a single-stage method (not "
                       f"{', '.join(PIPELINES)})")
    out.append((name, [int(s) for s in (own.split("+") if own else seeds)]))
  return out


def _is_float(text: str) -> bool:
  try:
    float(text)
    return True
  except ValueError:
    return False


def stage_overrides(kind: str, prefix: str, *, steps, batch, labels, model, evals, warmup_frac,
                    ema_frac, num_train, seed):
  """`--config.<prefix>key=value` flags shared by every stage of every method."""
  num_labeled = num_train if kind in STUDENTS else int(labels) if labels.isdigit() else 0
  spe = max(1, num_labeled // batch)
  o = {"seed": seed, "input.labeled.batch_size": batch,
       "eval_every_steps": 0 if kind == "rotation" else steps // evals,  # no class loss
       # Resumable from its last evaluation whatever the preset's (FixMatch's: 10,000 steps).
       "checkpoint_every_steps": max(1, steps // evals),
       "evals.validation.rotation_average": False, "evals.test.rotation_average": False}
  if kind in UNLABELED:
    o["input.unlabeled.batch_size"] = batch * UNLABELED_RATIO.get(kind, 1)
  if num_labeled and kind not in FINETUNES:
    o["lr.warmup_epochs"] = warmup_frac * steps / spe
  if num_labeled and kind == "moam_step1":
    o["ema_halflife_epochs"] = ema_frac * steps / spe
  if kind == "fixmatch":  # the same half-life as a per-step decay (0.999 suits 2^20 steps)
    o["ema_decay"] = 0.5 ** (1 / max(ema_frac * steps, 1))
  for item in filter(None, model.split(",")):
    k, _, v = item.partition("=")
    o[f"model.{k}"] = v
  fmt = lambda v: f"{v:.6g}" if isinstance(v, float) else v
  return [f"--config.{prefix}{k}={fmt(v)}" for k, v in o.items()]


def commands(method: str, seed: int, runs: str, a: dict):
  """[(workdir, argv)] of the pipeline, prerequisites first."""
  # The small-data recipes (`regime=small`, whatever the dataset) at this step budget.
  base = f"dataset={a['dataset']},labels={a['labels']},steps={a['steps']},regime=small"
  kw = dict(steps=a["steps"], batch=a["batch"], labels=a["labels"], model=a["model"],
            evals=a["evals"], warmup_frac=a["warmup_frac"], ema_frac=a["ema_frac"],
            num_train=a["num_train"], seed=seed)
  wd = lambda m: os.path.join(runs, f"{m}_s{seed}")

  def cmd(workdir, config, kind, prefix=""):
    return (workdir, [sys.executable, "main.py", f"--config=configs/{config}",
                      f"--workdir={workdir}", *stage_overrides(kind, prefix, **kw)])
  recipe, _, lr = method.partition("@")
  if lr:  # the recipe at another learning rate (a sweep), in its own run directory
    (_, argv), = commands(recipe, seed, runs, a)
    return [(wd(method), [*argv[:3], f"--workdir={wd(method)}", *argv[4:],
                          f"--config.lr.base={lr}"])]
  if method == "pseudo_label":
    return [*commands("supervised", seed, runs, a),
            cmd(wd(method), f"pseudo_label.py:teacher={wd('supervised')}/export,{base}",
                "pseudo_label")]
  if method == "rotation_finetune":
    return [cmd(wd("rotation"), f"rotation.py:{base}", "rotation"),
            cmd(wd(method), f"finetune.py:pretrained={wd('rotation')}/export,{base}",
                "supervised")]
  if method == "moam":
    workdir, argv = cmd(wd(method), f"moam.py:{base}", "moam_step1", "stages.step1.")
    for stage in ("step2", "step3"):
      argv += stage_overrides(f"moam_{stage}", f"stages.{stage}.", **kw)
    return [(workdir, argv)]
  if method == "simclrv2":
    workdir, argv = cmd(wd(method), f"simclrv2.py:{base}", "simclrv2_pretrain",
                        "stages.pretrain.")
    for stage in ("finetune", "distill"):
      argv += stage_overrides(f"simclrv2_{stage}", f"stages.{stage}.", **kw)
    if a.get("simclrv2_stages", "all") != "all":
      argv.append(f"--config.run_stages={a['simclrv2_stages']}")
    return [(workdir, argv)]
  if method == "noisy_student":
    workdir, argv = cmd(wd(method), f"noisy_student.py:{base},"
                        f"iterations={NOISY_STUDENT_ITERATIONS}", "supervised", "stages.teacher.")
    for i in range(1, NOISY_STUDENT_ITERATIONS + 1):
      argv += stage_overrides("noisy_student_student", f"stages.student{i}.", **kw)
    return [(workdir, argv)]
  if method.endswith("_control"):
    recipe = method.removesuffix("_control")
    workdir, argv = cmd(wd(method), f"{recipe}.py:{base}", recipe)
    return [(workdir, argv + [f"--config.{k}={v}" for k, v in CONTROLS[recipe].items()])]
  return [cmd(wd(method), f"{method}.py:{base}", method)]


def _claim(workdir: str) -> bool:
  """Takes WORKDIR/.running (pid) unless a live process holds it: parallel invocations with
  overlapping method lists never train the same run twice."""
  path = os.path.join(workdir, ".running")
  try:
    with open(path) as f:
      os.kill(int(f.read()), 0)
    return False
  except (FileNotFoundError, ValueError, ProcessLookupError):
    with open(path, "w") as f:
      f.write(str(os.getpid()))
    return True


def run_all(methods, runs: str, a: dict, log=print):
  for method, seeds in methods:
    for seed in seeds:
      for workdir, argv in commands(method, seed, runs, a):
        if os.path.exists(os.path.join(workdir, "results.json")):
          continue
        os.makedirs(workdir, exist_ok=True)
        if not _claim(workdir):
          log(f"{workdir} is being trained by another process; skipping its pipeline")
          break
        log(f"[{time.strftime('%H:%M:%S')}] {' '.join(argv[1:])}")
        with open(os.path.join(workdir, "log.txt"), "a") as f:
          rc = subprocess.call(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        os.remove(os.path.join(workdir, ".running"))
        log(f"[{time.strftime('%H:%M:%S')}] rc={rc} {workdir}")
        if rc:
          break  # the rest of this pipeline needs this stage


def run_stats(workdir: str, seed: int, extra_dirs=()) -> dict | None:
  """Statistics of one finished method run (None when unfinished)."""
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    res = json.load(f)
  last_dir, last = workdir, res
  if "stages" in res:
    name = list(res["stages"])[-1]
    last_dir, last = os.path.join(workdir, name), res["stages"][name]
  ema = "ema_top1" in last["evals"]["test"] and last["top1"] == last["evals"]["test"]["ema_top1"]
  tag = "validation/" + ("ema_top1" if ema else "top1")
  scalars = events.read_scalars(last_dir)
  curve = scalars.get(tag, [])
  stats = aggregate.curve_stats(curve or [(res["steps"], last["validation_top1"])], last_k=5)
  wall = res["wall_s"]
  for d in extra_dirs:  # prerequisites owned by this method (rotation pretraining)
    with open(os.path.join(d, "results.json")) as f:
      wall += json.load(f)["wall_s"]
  stages = {name: dict(test_top1=st["top1"], val_top1=st.get("validation_top1"))
            for name, st in res.get("stages", {}).items()}
  extra = pseudo_label_stats(scalars) if "mask_rate" in scalars else {}
  return dict(seed=seed, workdir=workdir, steps=res["steps"], test_top1=res["top1"], **extra,
              val_top1=last["validation_top1"], best_val_top1=stats["validation_top1_best"],
              median5_val_top1=stats["validation_top1_median"],
              num_evals=stats["validation_top1_evals"], wall_s=wall,
              images_per_s=res["images_per_s"],
              eval_metric=tag, curve=curve, stages=stages)


def pseudo_label_stats(scalars: dict) -> dict:
  """FixMatch's signal over the logged steps: the mask rate (unlabeled images above the
  threshold) and the accuracy of those masked pseudo-labels (mask_correct_rate / mask_rate),
  each as a curve and as the mean over the last 10 % of the logs."""
  mask, correct = (dict(scalars.get(k, [])) for k in ("mask_rate", "mask_correct_rate"))
  steps = sorted(set(mask) & set(correct))
  curve = [(s, mask[s], correct[s] / mask[s] if mask[s] else None) for s in steps]
  tail = curve[-max(1, len(curve) // 10):]
  masked = [a for _, _, a in tail if a is not None]
  return dict(mask_rate=statistics.mean(m for _, m, _ in tail) if tail else None,
              masked_pseudo_label_accuracy=statistics.mean(masked) if masked else None,
              pseudo_label_curve=curve)


def collect(methods, runs: str) -> dict:
  out = {}
  for method, seeds in methods:
    rows = []
    for seed in seeds:
      extra = [os.path.join(runs, f"rotation_s{seed}")] if method == "rotation_finetune" else []
      r = run_stats(os.path.join(runs, f"{method}_s{seed}"), seed, extra)
      if r:
        rows.append(r)
    out[method] = rows
  return out


def _mean_or_none(xs):
  return None if None in xs else statistics.mean(xs)


def summarize(results: dict) -> dict:
  summary = {}
  for method, rows in results.items():
    if not rows:
      continue
    s = {"seeds": [r["seed"] for r in rows]}
    for k in ("test_top1", "val_top1", "best_val_top1", "median5_val_top1", "wall_s",
              "images_per_s"):
      s[k], s[k + "_std"] = aggregate.mean_std([r[k] for r in rows])
    for k in ("mask_rate", "masked_pseudo_label_accuracy"):  # FixMatch's signal
      if all(r.get(k) is not None for r in rows):
        s[k], s[k + "_std"] = aggregate.mean_std([r[k] for r in rows])
    if all(r.get("stages") for r in rows):  # chained pipelines: each stage's own scores
      s["stages"] = {name: {k: _mean_or_none([r["stages"][name][k] for r in rows])
                            for k in ("test_top1", "val_top1")} for name in rows[0]["stages"]}
    summary[method] = s
  return summary


def to_markdown(summary: dict, header: str = "") -> str:
  pct = lambda s, k: (f"{100 * s[k]:.2f} ± {100 * s[k + '_std']:.2f}" if len(s["seeds"]) > 1
                      else f"{100 * s[k]:.2f}")
  lines = [header, ""] if header else []
  lines += ["| method | seeds | test top-1 % | val top-1 % | best val top-1 % | "
            "median last 5 val % | wall s | images/s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for m, s in summary.items():
    lines.append(f"| {m} | {','.join(map(str, s['seeds']))} | {pct(s, 'test_top1')} | "
                 f"{pct(s, 'val_top1')} | {pct(s, 'best_val_top1')} | "
                 f"{pct(s, 'median5_val_top1')} | {s['wall_s']:.0f} | "
                 f"{s['images_per_s']:.0f} |")
  masked = lambda s: ("none above the threshold" if s.get("masked_pseudo_label_accuracy") is None
                      else f"{100 * s['masked_pseudo_label_accuracy']:.1f} % correct")
  signal = [f"- {m}: mask rate {100 * s['mask_rate']:.1f} % ({masked(s)}; last 10 % of the "
            "logged steps)" for m, s in summary.items() if s.get("mask_rate") is not None]
  if signal:
    lines += ["", "Pseudo-labels of the confidence-masked methods:", ""] + signal
  staged = {m: s["stages"] for m, s in summary.items() if s.get("stages")}
  if staged:
    lines += ["", "Each stage of the chained methods, test / val top-1 % (mean over seeds):", ""]
    pct_or_dash = lambda v: "-" if v is None else f"{100 * v:.2f}"
    lines += [f"- {m}: " + ", ".join(f"{name} {pct_or_dash(st['test_top1'])} / "
                                     f"{pct_or_dash(st['val_top1'])}" for name, st in stages.items())
              for m, stages in staged.items()]
  return "\n".join(lines) + "\n"


def plot(results: dict, summary: dict, path: str, title: str):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  masked = [m for m in summary if any(r.get("pseudo_label_curve") for r in results[m])]
  fig, axes = plt.subplots(1, 3 if masked else 2, figsize=(19 if masked else 13, 4.5))
  ax1, ax2 = axes[:2]
  names = list(summary)
  ax1.bar(range(len(names)), [100 * summary[m]["test_top1"] for m in names],
          yerr=[100 * summary[m]["test_top1_std"] for m in names], capsize=4, color="C0")
  ax1.set_xticks(range(len(names)), names, rotation=30, ha="right")
  ax1.set_ylabel("final test top-1 % (mean ± std over seeds)")
  colors = plt.get_cmap("tab20").colors  # 20 distinct colours: one per method
  for i, m in enumerate(names):
    for j, r in enumerate(results[m]):
      steps, vals = zip(*r["curve"]) if r["curve"] else ((), ())
      ax2.plot(steps, [100 * v for v in vals], color=colors[i % 20],
               linestyle=("-", "--")[i // 10 % 2], marker=".", label=m if j == 0 else None)
  ax2.set_xlabel("step (last stage)")
  ax2.set_ylabel("validation top-1 %")
  ax2.legend(fontsize=7)
  for i, m in enumerate(masked):  # FixMatch's signal: mask rate, accuracy of the masked labels
    for j, r in enumerate(results[m]):
      steps, rate, accuracy = zip(*r["pseudo_label_curve"])
      axes[2].plot(steps, [100 * v for v in rate], color=f"C{i}",
                   label=f"{m}: mask rate" if j == 0 else None)
      axes[2].plot(steps, [None if v is None else 100 * v for v in accuracy], color=f"C{i}",
                   linestyle=":", label=f"{m}: masked correct" if j == 0 else None)
  if masked:
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("% of the unlabeled batch / of the masked")
    axes[2].legend(fontsize=7)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_report(methods, runs: str, a: dict, name: str, out_dir: str):
  results = collect(methods, runs)
  summary = summarize(results)
  title = (f"{a['dataset'].split('/')[-1]}, {a['labels']} labels, {a['steps']} steps, batch "
           f"{a['batch']}, model {a['model'] or 'preset'}")
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, name + ".json"), "w") as f:
    json.dump(dict(settings=a, summary=summary, runs=results), f, indent=2)
  with open(os.path.join(out_dir, name + ".md"), "w") as f:
    f.write(to_markdown(summary, title))
  render_docs.after_write(os.path.join(out_dir, name + ".md"))
  if summary:
    plot(results, summary, os.path.join(out_dir, name + ".png"), title)
  return summary


def main(argv):
  del argv
  if not _DATASET.value or not _NAME.value:
    raise app.UsageError("--dataset and --name are required")
  a = dict(dataset=_DATASET.value, labels=_LABELS.value, steps=_STEPS.value,
           batch=_BATCH.value, model=_MODEL.value, evals=_EVALS.value,
           warmup_frac=_WARMUP.value, ema_frac=_EMA.value, num_train=_NUM_TRAIN.value,
           simclrv2_stages=_SIMCLRV2_STAGES.value)
  methods = parse_methods(_METHODS.value, _SEEDS.value)
  runs = _RUNS.value or os.path.join("/tmp/label_efficiency", _NAME.value)
  out_dir = _OUT_DIR.value or os.path.join(ROOT, "benchmarks", "results")
  if not _REPORT_ONLY.value:
    run_all(methods, runs, a, log=lambda s: print(s, flush=True))
  print(to_markdown(write_report(methods, runs, a, _NAME.value, out_dir)))


if __name__ == "__main__":
  app.run(main)
