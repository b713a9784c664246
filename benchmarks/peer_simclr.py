"""Peer parity of SimCLR pretraining: this project's `simclr` objective against lightly's, on CPU.

    mkdir -p /tmp/c10 && tar xzf ../shared/data/cifar10_jpeg.tar.gz -C /tmp/c10
    PEER=/path/to/venv  # torch, torchvision, semilearn, lightly
    PYTHONPATH=. python benchmarks/peer_simclr.py --data=/tmp/c10 --steps=300 --seeds=0 \
        --peer_python=$PEER/bin/python --name=peer_parity_simclr

For each seed, this project's split of the train images (`peer_parity.write_subsets` with
`--bank` labels) gives the kNN / probe bank (the labeled list) and the unlabeled list (train
minus validation, the stream main.py pretrains on), written once as file lists that lightly's
run (`benchmarks/peer_lightly.py`) reads. Both pretrain the same WRN trunk and 3-layer
projection head with NT-Xent on two SimCLR views of `batch` images per step, SGD momentum and a
cosine lr, for `steps` steps; each side writes the eval-mode pooled trunk features of the bank
and the test split (.npz), and ONE function here (`evaluate_features`) scores both: weighted
kNN (k, T on L2-normalised features, bank -> test) and a logistic-regression probe. The
contrastive accuracy (positive ranked first among 2B - 1 candidates) is logged by both every
`log_every` steps. Runs alternate this project / lightly per seed (same CPU state); s / step is
each run's training time per step. `ALIGNED` lists what was set to match, `DIFFERENCES` what
remains. Parity (issue 23's rule, `peer_parity.parity`) is judged on the kNN top-1.
Runs are resumable: finished runs (features.npz present) are skipped.
Writes <name>.json (the `methods` entry shape of peer_parity.json), <name>.md, <name>.png.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags
import numpy as np

from peer_parity import parity, write_subsets
import render_docs
from s4l_jax.events import read_scalars

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TEMPERATURE = 0.5          # lightly's CIFAR-10 benchmark (NTXentLoss default)
LR_PER_128, MOMENTUM, WEIGHT_DECAY = 0.06, 0.9, 5e-4  # lightly's CIFAR-10 benchmark: lr
# 0.06 x batch / 128
BN_MOMENTUM, HEAD_BN_EPSILON = 0.9, 1e-3  # this project's BN eps (heads: the model's)
PROJ_LAYERS, PROJ_DIM = 3, 128  # SimCLRv2's head (configs/simclrv2.py), lightly's v2 form
# SimCLR's view without blur (lightly's recommendation for 32 px CIFAR images: blur 0):
# random resized crop (area 0.08-1) + flip + colour jitter (strength 1, p 0.8) + grey (p 0.2).
VIEW = "simclr_crop*2|flip|color_jitter|grey"
PEER_VIEW = dict(min_scale=0.08, jitter_strength=1.0, grey_prob=0.2, blur_prob=0.0)
# The network and input scaling on lightly's side: this project's WRN trunk (peer_lightly's
# PyTorch port) on [-1, 1] pixels. With USB's WideResNet (trunk "usb", the network of
# peer_parity.py) lightly gained kNN points that this trunk does not (README, "SimCLR
# pretraining vs lightly"): the trunk is not what this comparison is about.
PEER_NETWORK = dict(trunk="s4l_jax", pixels="pm1")
KNN_K, KNN_T = 200, 0.1
# This project's NT-Xent is SimCLR TF's sum of both directions' mean losses, lightly's their
# mean: its gradient is this factor larger, so this side takes lr / 2 and weight decay x 2
# (with coupled decay and momentum the same update: lr/2 (2 g + 2 wd w) = lr (g + wd w)).
LOSS_SCALE = 2
ALIGNED = [
    "same unlabeled file list (this project's train minus validation) and kNN / probe bank "
    "(its labeled draw), test split, evaluation function",
    "this project's WRN-depth-width trunk on both sides (peer_lightly's PyTorch port on lightly's "
    "side: same forward pass and gradients, checked to 1e-6 / 2e-3 relative from the same "
    f"weights; glorot-uniform convs, BN eps 1e-3, momentum {BN_MOMENTUM}) on pixels in "
    "[-1, 1] + the 3-layer projection head of SimCLRv2 (lightly's "
    "SimCLRProjectionHead(num_layers=3, batch_norm=True): Linear without bias -> BN -> ReLU "
    f"x2 -> Linear -> BN with bias; {PROJ_DIM}-d; Linear init N(0, 0.01^2) on both; head BN "
    f"momentum {BN_MOMENTUM}, eps {HEAD_BN_EPSILON})",
    f"NT-Xent, temperature {TEMPERATURE}, negatives = the other 2B - 2 views; one forward pass "
    "over both views (BN statistics over 2B images)",
    f"SGD momentum {MOMENTUM} (no Nesterov), lr {LR_PER_128} x batch / 128 with cosine decay "
    "to 0, no warm-up, "
    f"coupled weight decay {WEIGHT_DECAY} on conv / dense kernels only (lightly's values; this "
    f"project's loss is {LOSS_SCALE} x lightly's, the sum of both directions, so it runs at lr "
    f"/ {LOSS_SCALE} and weight decay x {LOSS_SCALE}: the same update)",
    "view: random resized crop (area 0.08-1, aspect 3/4-4/3) + flip + colour jitter "
    "(0.8, 0.8, 0.8, 0.2; p 0.8; random order) + greyscale (p 0.2), no blur (lightly's CIFAR "
    "setting)",
]
DIFFERENCES = [
    "pretraining batch: lightly draws `batch` unlabeled images per step (epochs, drop_last); "
    "here `batch - bank_batch` unlabeled images plus `bank_batch` (1) labeled ones (the "
    "simclr objective needs its labeled stream; the bank images are also in the unlabeled "
    "list; its stop-gradient linear classifier never moves the encoder): the same number of "
    "images, the bank images slightly oversampled (no effect expected)",
    "crop: TF's sample_distorted_bounding_box (integer heights, first valid of 100 tries, "
    "bicubic resize without antialiasing) vs torchvision's RandomResizedCrop (log-uniform "
    "aspect, 10 tries then a central crop, bilinear with antialiasing): smaller crops here "
    "(the height drawn uniformly: mean area 0.43 vs 0.49 of the image), slightly sharper "
    "(positive pairs a little harder: NT-Xent of one fixed network 0.03 higher; small "
    "effect expected)",
    "colour ops (lightly's run them on PIL images): brightness multiplicative and hue an HSV "
    "shift on both; contrast scales around the per-channel mean here (TF) vs the greyscale "
    "mean (PIL), saturation scales S in HSV with clipping here (TF) vs a blend with the "
    "greyscale image (PIL, can extrapolate past S = 1); greyscale weights 0.2989/0.5870/"
    "0.1140 vs 0.299/0.587/0.114: same ranges and probabilities, slightly different "
    "per-image colours (a small effect on the difficulty of the task expected)",
    "randomness: different generators (data order, crops, initialisation): seeds are not "
    "comparable across sides, only means",
    "timing: lightly augments on the host in the training process (num_workers 0, PIL), this "
    "project on the device inside the jitted step; both times include augmentation",
]


def lr(batch: int) -> float:
  """Peak learning rate at `batch` images per step (lightly's linear rule)."""
  return LR_PER_128 * batch / 128


def write_lists(data: str, bank: str, seed: int, out_dir: str) -> dict:
  """{"bank_list", "unlabeled_list"} paths: the labeled draw of `bank` labels and the train
  images outside the validation draw (this project's unlabeled stream), relative to `data`."""
  bank_path, val_path = write_subsets(data, bank, seed, out_dir)
  unlabeled_path = os.path.join(out_dir, f"unlabeled_s{seed}.txt")
  if not os.path.exists(unlabeled_path):
    held_out = set(open(val_path).read().split())
    train = sorted(os.path.relpath(os.path.join(d, n), data)
                   for d, _, names in os.walk(os.path.join(data, "train")) for n in names)
    with open(unlabeled_path + ".tmp", "w") as f:
      f.write("".join(p + "\n" for p in train if p not in held_out))
    os.replace(unlabeled_path + ".tmp", unlabeled_path)
  return dict(bank_list=bank_path, unlabeled_list=unlabeled_path)


def ours_command(seed: int, workdir: str, a: dict) -> list[str]:
  """main.py's pretraining stage of configs/simclrv2.py with the shared settings."""
  base = (f"dataset=folder:{a['data']},labels={a['bank']},steps={a['steps']},step=1")
  o = {"seed": seed, "model.name": "wrn", "model.depth": a["depth"],
       "model.width": a["width"], "model.bn_momentum": BN_MOMENTUM,
       "model.heads.proj.output_bn_bias": True,
       "input.unlabeled.batch_size": a["batch"] - a["bank_batch"],
       "input.labeled.batch_size": a["bank_batch"],
       "input.unlabeled.view": VIEW, "input.labeled.view": VIEW,
       "loss.temperature": TEMPERATURE, "optimizer.name": "momentum",
       "optimizer.momentum": MOMENTUM, "optimizer.weight_decay": WEIGHT_DECAY * LOSS_SCALE,
       "lr.base": lr(a["batch"]) / LOSS_SCALE, "lr.scaling": "linear", "lr.scale_batch_size": 0,
       "lr.schedule": "cosine", "lr.warmup_epochs": 0.0, "log_every_steps": a["log_every"]}
  fmt = lambda v: f"{v:.6g}" if isinstance(v, float) else v
  return [sys.executable, "main.py", f"--config=configs/simclrv2.py:{base}",
          f"--workdir={workdir}", *(f"--config.stages.pretrain.{k}={fmt(v)}"
                                    for k, v in o.items())]


def peer_spec(seed: int, lists: dict, workdir: str, a: dict) -> dict:
  return dict(root=a["data"], **lists, seed=seed, steps=a["steps"], batch=a["batch"],
              depth=a["depth"], width=a["width"], bn_momentum=BN_MOMENTUM,
              leaky_relu_slope=0.0, head_bn_epsilon=HEAD_BN_EPSILON, proj_dim=PROJ_DIM,
              proj_layers=PROJ_LAYERS, temperature=TEMPERATURE, lr=lr(a["batch"]),
              momentum=MOMENTUM,
              weight_decay=WEIGHT_DECAY, log_every=a["log_every"], threads=a["peer_threads"],
              **PEER_VIEW, **PEER_NETWORK, out=os.path.join(workdir, "lightly.json"),
              features=os.path.join(workdir, "features.npz"))


def extract_features(export_dir: str, data: str, bank_list: str, out: str):
  """Writes `out` (.npz: bank_x, bank_y, test_x, test_y): the exported network's eval-mode
  `pre_logits` (N, D) float32 of the listed bank images and of the test split."""
  import jax  # pylint: disable=g-import-not-at-top
  from s4l_jax import export  # pylint: disable=g-import-not-at-top
  from s4l_jax.data import sources  # pylint: disable=g-import-not-at-top
  model, variables, _ = export.load_model(export_dir)
  embed = jax.jit(lambda x: model.apply(variables, export.to_model_input(x),
                                        train=False)["pre_logits"])
  pooled = lambda images: np.concatenate([np.asarray(embed(images[i:i + 500]))
                                          for i in range(0, len(images), 500)])
  train = sources.load_split(f"folder:{data}", "train")
  test = sources.load_split(f"folder:{data}", "test")
  index = {n: i for i, n in enumerate(train.filenames)}
  bank = np.array([index[n] for n in open(bank_list).read().split()])
  np.savez(out + ".tmp.npz", bank_x=pooled(train.images[bank]), bank_y=train.labels[bank],
           test_x=pooled(test.images), test_y=test.labels)
  os.replace(out + ".tmp.npz", out)


def knn_top1(bank_x, bank_y, test_x, test_y, k: int = KNN_K, t: float = KNN_T) -> float:
  """Weighted kNN (InstDisc / DINO): each test feature's k most cosine-similar bank features
  vote for their class with weight exp(similarity / t); top-1 of the summed votes. x: (N, D)."""
  normed = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
  sim = normed(test_x) @ normed(bank_x).T
  k = min(k, len(bank_y))
  nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
  weights = np.exp(np.take_along_axis(sim, nearest, 1) / t)
  votes = np.zeros((len(test_x), int(max(bank_y.max(), test_y.max())) + 1))
  np.add.at(votes, (np.arange(len(test_x))[:, None], bank_y[nearest]), weights)
  return float(np.mean(votes.argmax(1) == test_y))


def probe_top1(bank_x, bank_y, test_x, test_y) -> float:
  """Logistic-regression probe (scikit-learn, L2 C=1) on standardised features, bank -> test."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
  return float(probe.fit(bank_x, bank_y).score(test_x, test_y))


def evaluate_features(path: str) -> dict:
  """{"knn_top1", "probe_top1"} of a features .npz (either side's)."""
  f = np.load(path)
  args = (f["bank_x"], f["bank_y"], f["test_x"], f["test_y"])
  return dict(knn_top1=knn_top1(*args), probe_top1=probe_top1(*args))


def final_contrast(curve: list, fraction: float = 0.2) -> float:
  """Mean contrastive accuracy of the logged points in the last `fraction` of the steps."""
  last = curve[-1][0]
  return statistics.mean(v for s, v in curve if s >= (1 - fraction) * last)


def run_dir(runs: str, impl: str, seed: int) -> str:
  return os.path.join(runs, impl, f"simclr_s{seed}")


def run_all(a: dict, runs: str, log=print):
  """For each seed: this project's run, then lightly's (same CPU state)."""
  for seed in a["seeds"]:
    lists = write_lists(a["data"], a["bank"], seed, os.path.join(runs, "subsets"))
    for impl in a["impls"]:
      workdir = run_dir(runs, impl, seed)
      features = os.path.join(workdir, "features.npz")
      if os.path.exists(features):
        continue
      os.makedirs(workdir, exist_ok=True)
      if impl == "s4l_jax":
        argv = ours_command(seed, workdir, a)
      else:
        spec_path = os.path.join(workdir, "spec.json")
        with open(spec_path, "w") as f:
          json.dump(peer_spec(seed, lists, workdir, a), f, indent=1)
        argv = [a["peer_python"], os.path.join(ROOT, "benchmarks", "peer_lightly.py"),
                spec_path]
      log(f"[{time.strftime('%H:%M:%S')}] {impl} seed {seed}")
      with open(os.path.join(workdir, "log.txt"), "a") as f:
        rc = subprocess.call(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
      log(f"[{time.strftime('%H:%M:%S')}] rc={rc} {workdir}")
      if impl == "s4l_jax" and rc == 0:
        extract_features(os.path.join(workdir, "pretrain", "export"), a["data"],
                         lists["bank_list"], features)


def run_stats(runs: str, impl: str, seed: int) -> dict | None:
  """Scores of a finished run: kNN / probe top-1, contrastive accuracy, curves, s / step."""
  workdir = run_dir(runs, impl, seed)
  features = os.path.join(workdir, "features.npz")
  if not os.path.exists(features):
    return None
  if impl == "s4l_jax":
    scalars = read_scalars(os.path.join(workdir, "pretrain"))
    tag = lambda suffix: next((v for t, v in scalars.items() if t.endswith(suffix)), [])
    contrast = tag("contrast_accuracy")
    loss = [(s, v / LOSS_SCALE) for s, v in tag("contrastive_loss")]  # in lightly's units
    rates = [v for _, v in tag("steps_per_s")[1:]]  # the first interval includes compiling
    s_per_step = 1 / statistics.median(rates) if rates else None  # None: too short to time
  else:
    with open(os.path.join(workdir, "lightly.json")) as f:
      res = json.load(f)
    contrast, loss, s_per_step = res["contrast_curve"], res["loss_curve"], res["s_per_step"]
  contrast = [list(c) for c in contrast]
  return dict(evaluate_features(features), contrast_accuracy=final_contrast(contrast),
              contrast_curve=contrast, loss_curve=[list(c) for c in loss], s_per_step=s_per_step)


def collect(a: dict, runs: str) -> dict:
  """{"simclr": the peer_parity.json `methods` entry, plus probe / contrastive lists}."""
  rows = {impl: [run_stats(runs, impl, s) for s in a["seeds"]] for impl in ("s4l_jax", "lightly")}
  per_seed = lambda impl, key: [r[key] for r in rows[impl] if r and r[key] is not None]
  mean = lambda impl, key: statistics.mean(per_seed(impl, key)) if per_seed(impl, key) else None
  ours, peer = per_seed("s4l_jax", "knn_top1"), per_seed("lightly", "knn_top1")
  return {"simclr": dict(
      peer="lightly", steps=a["steps"], seeds=a["seeds"], metric=f"kNN top-1 (k={KNN_K}, "
      f"T={KNN_T}, {a['bank']} labeled train images -> test)", s4l_jax=ours, peer_top1=peer,
      s4l_jax_probe=per_seed("s4l_jax", "probe_top1"),
      peer_probe=per_seed("lightly", "probe_top1"),
      s4l_jax_contrast=per_seed("s4l_jax", "contrast_accuracy"),
      peer_contrast=per_seed("lightly", "contrast_accuracy"),
      s4l_jax_s_per_step=mean("s4l_jax", "s_per_step"),
      peer_s_per_step=mean("lightly", "s_per_step"), parity=parity(ours, peer),
      differences=DIFFERENCES,
      curves={impl: [{k: r[k] for k in ("contrast_curve", "loss_curve")} if r else None
                     for r in rows[impl]] for impl in rows})}


def to_markdown(settings: dict, methods: dict) -> str:
  r = methods["simclr"]
  pct = lambda xs: ("-" if not xs else f"{100 * statistics.mean(xs):.2f}" + (
      f" ± {100 * statistics.stdev(xs):.2f}" if len(xs) > 1 else "") + f" (n={len(xs)})")
  sec = lambda v: "-" if v is None else f"{v:.3f}"
  verdict = {True: "yes", False: "**no**", None: "not judged (< 2 seeds)"}[r["parity"]]
  lines = [f"SimCLR peer parity (lightly), WRN-{settings['depth']}-{settings['width']}, "
           f"{settings['steps']} steps, batch {settings['batch']}: %, mean ± std over seeds", "",
           "| metric | s4l_jax | lightly |", "| --- | --- | --- |",
           f"| {r['metric']} | {pct(r['s4l_jax'])} | {pct(r['peer_top1'])} |",
           f"| linear probe top-1 (logistic regression, same features) | "
           f"{pct(r['s4l_jax_probe'])} | {pct(r['peer_probe'])} |",
           f"| contrastive accuracy, last 20 % of steps (positive first of 2B - 1) | "
           f"{pct(r['s4l_jax_contrast'])} | {pct(r['peer_contrast'])} |",
           f"| s / step (training, this machine's load: {settings['load']}) | "
           f"{sec(r['s4l_jax_s_per_step'])} | {sec(r['peer_s_per_step'])} |", "",
           f"Parity on kNN top-1 (|difference of means| <= max(2 points, 2 x std)): {verdict}",
           "", "Aligned by configuration:", ""]
  lines += [f"- {x}" for x in ALIGNED]
  lines += ["", "Remaining differences and their expected effect:", ""]
  lines += [f"- {x}" for x in r["differences"]]
  return "\n".join(lines) + "\n"


def plot(methods: dict, path: str, title: str):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  r = methods["simclr"]
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
  for ax, key, label in ((axes[0], "contrast_curve", "contrastive accuracy %"),
                         (axes[1], "loss_curve", "NT-Xent loss")):
    for impl, color in (("s4l_jax", "C0"), ("lightly", "C3")):
      for i, curves in enumerate(r["curves"][impl]):
        if curves:
          steps, vals = zip(*curves[key])
          scale = 100 if key == "contrast_curve" else 1
          ax.plot(steps, [scale * v for v in vals], color=color, marker=".",
                  linestyle=("-", "--", ":")[i % 3], label=f"{impl} seed {r['seeds'][i]}")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def write_report(a: dict, runs: str, name: str, out_dir: str) -> dict:
  methods = collect(a, runs)
  settings = {k: v for k, v in a.items() if k != "peer_python"}
  settings.update(temperature=TEMPERATURE, lr=lr(a["batch"]), momentum=MOMENTUM,
                  weight_decay=WEIGHT_DECAY,
                  bn_momentum=BN_MOMENTUM, view=VIEW, peer_view=PEER_VIEW,
                  peer_network=PEER_NETWORK, knn_k=KNN_K,
                  knn_t=KNN_T, aligned=ALIGNED)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, name + ".json"), "w") as f:
    json.dump(dict(settings=settings, methods=methods), f, indent=1)
  md = to_markdown(settings, methods)
  with open(os.path.join(out_dir, name + ".md"), "w") as f:
    f.write(md)
  render_docs.after_write(os.path.join(out_dir, name + ".md"))
  plot(methods, os.path.join(out_dir, name + ".png"), md.splitlines()[0])
  return methods


def define_flags():
  """The command line (defined only when run as a script, as peer_parity.py)."""
  flags.DEFINE_string("data", None, "Image folder root (train/<class>/*, test/<class>/*).")
  flags.DEFINE_string("bank", "5000", "Labels spec of the kNN / probe bank (subsets.py).")
  flags.DEFINE_integer("steps", 300, "Pretraining steps of every run.")
  flags.DEFINE_list("seeds", ["0"], "Seeds (split + initialisation).")
  flags.DEFINE_list("impls", ["s4l_jax", "lightly"], "Implementations to run.")
  flags.DEFINE_integer("batch", 128, "Images per step (2 views each).")
  flags.DEFINE_integer("bank_batch", 1, "This project's labeled images per step (>= 1).")
  flags.DEFINE_integer("depth", 10, "WRN depth.")
  flags.DEFINE_integer("width", 1, "WRN widen factor.")
  flags.DEFINE_integer("log_every", 25, "Steps between logged contrastive accuracies.")
  flags.DEFINE_integer("peer_threads", 1, "torch threads of lightly's run.")
  flags.DEFINE_string("peer_python", "", "Python with torch + semilearn + lightly.")
  flags.DEFINE_string("name", "peer_parity_simclr", "Result name.")
  flags.DEFINE_string("runs_dir", "", "Run directories (default /tmp/peer_parity/<name>).")
  flags.DEFINE_string("out_dir", "", "Report directory (default benchmarks/results).")
  flags.DEFINE_bool("report_only", False, "Only collect finished runs.")


def main(argv):
  del argv
  if not FLAGS.data:
    raise app.UsageError("--data is required (an image folder root)")
  if "lightly" in FLAGS.impls and not FLAGS.peer_python and not FLAGS.report_only:
    raise app.UsageError("--peer_python is required to run lightly (a Python with lightly)")
  a = dict(data=os.path.abspath(FLAGS.data), bank=FLAGS.bank, steps=FLAGS.steps,
           seeds=[int(s) for s in FLAGS.seeds], impls=FLAGS.impls, batch=FLAGS.batch,
           bank_batch=FLAGS.bank_batch, depth=FLAGS.depth, width=FLAGS.width,
           log_every=FLAGS.log_every, peer_threads=FLAGS.peer_threads,
           load="not recorded (--report_only)" if FLAGS.report_only else
           f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start",
           peer_python=FLAGS.peer_python)
  runs = FLAGS.runs_dir or os.path.join("/tmp/peer_parity", FLAGS.name)
  if not FLAGS.report_only:
    run_all(a, runs, log=lambda s: print(s, flush=True))
  methods = write_report(a, runs, FLAGS.name,
                         FLAGS.out_dir or os.path.join(ROOT, "benchmarks", "results"))
  print(json.dumps({k: methods["simclr"][k] for k in ("s4l_jax", "peer_top1", "parity")}))


if __name__ == "__main__":
  define_flags()
  app.run(main)
