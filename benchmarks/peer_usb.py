"""One USB (`semilearn`, microsoft/Semi-supervised-learning) run on an image folder, on CPU.

    PYTHON_WITH_SEMILEARN benchmarks/peer_usb.py SPEC.json

Run by `benchmarks/peer_parity.py` in the `parity` extra's environment (PyTorch + semilearn;
never this project's base install). SPEC (JSON) names the folder `root` (root/train/<class>/*,
root/test/<class>/*), the labeled and validation file lists (paths relative to root, one per
line, written by peer_parity.py from this project's split), the USB algorithm and its
arguments, and the settings both implementations share. USB's own training loop
(`AlgorithmBase.train` with its hooks: parameter update, EMA, evaluation, checkpoint) runs as
shipped; this script only
  * builds USB's datasets (`BasicDataset`, its CIFAR weak / strong / eval transforms) from the
    listed files instead of torchvision's CIFAR-10 download: labeled = the list, unlabeled =
    train minus validation (the labeled images included, USB's `include_lb_to_ulb`), `eval` =
    the validation images; the test split is scored once, with the final EMA model;
  * builds USB's WideResNet (`semilearn.nets.wrn.wrn.WideResNet`) at the given depth and widen
    factor, with its BN momentum and leaky-ReLU slope set to the shared settings;
  * makes USB's GPU-only calls no-ops on a CPU machine: `Tensor.cuda` (every batch) returns
    the tensor, and the TimerHook's CUDA events are not created.
Writes SPEC["out"]: {"curve": [[step, validation top-1]], "val_top1", "test_top1" (the EMA
model, as USB evaluates), "s_per_step" (training wall time per step, evaluations excluded),
"wall_s", "util_ratio" (FixMatch / pseudo-label: mean mask rate of the last 10 % of steps)}.
"""
import json
import os
import random
import sys
import time

import numpy as np
from PIL import Image
import torch

from semilearn.algorithms import name2alg
from semilearn.core.hooks import Hook, TimerHook
from semilearn.core.utils import get_data_loader
from semilearn.datasets.augmentation import RandAugment
from semilearn.datasets.cv_datasets.cifar import mean as USB_MEAN, std as USB_STD
from semilearn.datasets.cv_datasets.datasetbase import BasicDataset
from semilearn.lighting.config import get_config
from semilearn.nets.wrn.wrn import WideResNet
from torchvision import transforms

if not torch.cuda.is_available():  # USB moves every batch with .cuda(gpu): identity on CPU
  torch.Tensor.cuda = lambda self, *args, **kwargs: self
  for _name in ("before_run", "before_train_step", "after_train_step"):
    setattr(TimerHook, _name, lambda self, algorithm: None)


def read_list(root: str, path: str) -> list[str]:
  with open(path) as f:
    return [os.path.join(root, line.strip()) for line in f if line.strip()]


def folder_files(root: str, split: str) -> tuple[list[str], list[int]]:
  """Files of root/<split>/<class>/* in class-then-name order, and their class indices."""
  classes = sorted(e.name for e in os.scandir(os.path.join(root, "train")) if e.is_dir())
  paths, labels = [], []
  for label, cls in enumerate(classes):
    d = os.path.join(root, split, cls)
    names = sorted(e.name for e in os.scandir(d) if e.is_file())
    paths += [os.path.join(d, n) for n in names]
    labels += [label] * len(names)
  return paths, labels


def load(paths: list[str]) -> np.ndarray:
  return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def usb_transforms(size: int, crop_ratio: float, strong_ops: int):
  """USB's CIFAR transforms (semilearn/datasets/cv_datasets/cifar.py), RandAugment(n, 5)."""
  norm = transforms.Normalize(USB_MEAN["cifar10"], USB_STD["cifar10"])
  crop = transforms.RandomCrop(size, padding=int(size * (1 - crop_ratio)), padding_mode="reflect")
  weak = transforms.Compose([transforms.Resize(size), crop, transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), norm])
  strong = transforms.Compose([transforms.Resize(size), crop, transforms.RandomHorizontalFlip(),
                               RandAugment(strong_ops, 5), transforms.ToTensor(), norm])
  val = transforms.Compose([transforms.Resize(size), transforms.ToTensor(), norm])
  return weak, strong, val


class CurveHook(Hook):
  """Records USB's evaluation after each one, and the training time without evaluations."""

  def __init__(self):
    self.curve, self.util, self.eval_s = [], [], 0.0

  def after_train_step(self, algorithm):
    if "train/util_ratio" in algorithm.log_dict:
      self.util.append(algorithm.log_dict["train/util_ratio"])
    if "eval/top-1-acc" in algorithm.log_dict:
      self.curve.append([algorithm.it + 1, float(algorithm.log_dict.pop("eval/top-1-acc"))])


def main(spec_path: str):
  with open(spec_path) as f:
    spec = json.load(f)
  seed = spec["seed"]
  if spec.get("threads"):  # 0: torch's default (one per core)
    torch.set_num_threads(spec["threads"])
  random.seed(seed)
  np.random.seed(seed)
  torch.manual_seed(seed)
  root = spec["root"]
  train_paths, train_labels = folder_files(root, "train")
  test_paths, test_labels = folder_files(root, "test")
  index = {p: i for i, p in enumerate(train_paths)}
  labeled = [index[p] for p in read_list(root, spec["labeled_list"])]
  validation = [index[p] for p in read_list(root, spec["validation_list"])]
  unlabeled = sorted(set(range(len(train_paths))) - set(validation))
  train_images, train_labels = load(train_paths), np.asarray(train_labels)
  test_images, test_labels = load(test_paths), np.asarray(test_labels)

  alg = spec["algorithm"]
  weak, strong, val = usb_transforms(train_images.shape[1], 0.875, spec["strong_ops"])
  datasets = {
      "train_lb": BasicDataset(alg, train_images[labeled], train_labels[labeled], 10, weak,
                               False, strong, False),
      "train_ulb": BasicDataset(alg, train_images[unlabeled], train_labels[unlabeled], 10, weak,
                                True, strong, False),
      "eval": BasicDataset(alg, train_images[validation], train_labels[validation], 10, val,
                           False, None, False),
      "test": None}
  test_set = BasicDataset(alg, test_images, test_labels, 10, val, False, None, False)

  def net_builder(num_classes, **_):
    net = WideResNet(first_stride=1, num_classes=num_classes, depth=spec["depth"],
                     widen_factor=spec["width"])
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.momentum = 1 - spec["bn_momentum"]  # torch: new = (1 - m) * old + m * batch
      if isinstance(m, torch.nn.LeakyReLU):
        m.negative_slope = spec["leaky_relu_slope"]
    return net

  class Algorithm(name2alg[alg]):
    def set_dataset(self):
      self.args.ulb_dest_len, self.args.lb_dest_len = len(unlabeled), len(labeled)
      return datasets

  save_dir = os.path.dirname(os.path.abspath(spec["out"]))
  args = get_config(dict(
      algorithm=alg, net="wrn", num_classes=10, dataset="folder", num_labels=len(labeled),
      num_train_iter=spec["steps"], epoch=1, num_eval_iter=spec["eval_every"],
      num_log_iter=spec["steps"] + 1, num_warmup_iter=0, batch_size=spec["batch"],
      uratio=spec["uratio"], eval_batch_size=256, ema_m=spec["ema_m"], lr=spec["lr"],
      momentum=0.9, weight_decay=spec["weight_decay"], seed=seed, num_workers=spec["workers"],
      save_dir=save_dir, save_name="usb", use_cat=True, amp=False, gpu=None, distributed=False,
      **spec["algorithm_args"]))
  algorithm = Algorithm(args, net_builder, None, None)
  curve = CurveHook()
  algorithm.register_hook(curve, "CurveHook", "LOWEST")
  evaluate = algorithm.evaluate

  def timed_evaluate(*a, **k):
    start = time.time()
    out = evaluate(*a, **k)
    curve.eval_s += time.time() - start
    return out
  algorithm.evaluate = timed_evaluate
  start = time.time()
  algorithm.train()
  wall = time.time() - start
  s_per_step = (wall - curve.eval_s) / spec["steps"]
  # The final model (the EvaluationHook would score its best-on-validation one on a "test"
  # loader present during training).
  algorithm.loader_dict["test"] = get_data_loader(args, test_set, 256, data_sampler=None,
                                                  num_workers=0, drop_last=False)
  test = algorithm.evaluate("test")["test/top-1-acc"]
  tail = curve.util[-max(1, len(curve.util) // 10):]
  out = dict(curve=curve.curve, val_top1=curve.curve[-1][1], test_top1=float(test),
             s_per_step=s_per_step, wall_s=wall,
             util_ratio=float(np.mean(tail)) if tail else None)
  with open(spec["out"], "w") as f:
    json.dump(out, f, indent=1)
  print(json.dumps({k: v for k, v in out.items() if k != "curve"}))


if __name__ == "__main__":
  main(sys.argv[1])
