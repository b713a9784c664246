"""One SimCLR pretraining run with lightly (its `SimCLRTransform`, `NTXentLoss` and
`SimCLRProjectionHead`) on an image folder, on CPU.

    PYTHON_WITH_LIGHTLY benchmarks/peer_lightly.py SPEC.json

Run by `benchmarks/peer_simclr.py` in a PyTorch environment with lightly and semilearn (never
this project's base install). SPEC (JSON) names the folder `root` (root/train/<class>/*,
root/test/<class>/*), the unlabeled, kNN-bank file lists (paths relative to root, one per line,
written by peer_simclr.py) and the settings both implementations share. This script
  * trains a WRN trunk: `trunk` "usb" (default), USB's WideResNet
    (`semilearn.nets.wrn.wrn.WideResNet`, its pooled features, BN momentum / leaky slope set to
    the shared values, as peer_usb.py), or "s4l_jax", this project's (`S4lWideResNet`, a
    port); pixels normalised as `pixels` says (`PIXELS`, default lightly's "imagenet"); + lightly's
    `SimCLRProjectionHead` (Linear weights N(0, 0.01^2), this project's SimCLR init) with
    lightly's `NTXentLoss` on two `SimCLRTransform` views of `batch` unlabeled images per step,
    SGD momentum (no Nesterov), weight decay on conv / linear weights only, cosine lr to 0;
  * logs the contrastive accuracy (the positive's rank 1 among the 2B - 1 candidates of each
    of the 2B anchors) every `log_every` steps;
  * writes the eval-mode pooled trunk features of the bank list and of the test split.
Writes SPEC["out"] {"contrast_curve": [[step, accuracy]], "loss_curve", "s_per_step"
(training wall time per step: loading, augmenting, forward, backward, update), "wall_s"} and
SPEC["features"] (.npz: bank_x, bank_y, test_x, test_y; x float32 (N, D)).
"""
import json
import os
import random
import sys
import time

import numpy as np
from PIL import Image
import torch

from lightly.loss import NTXentLoss
from lightly.models.modules.heads import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from lightly.transforms.utils import IMAGENET_NORMALIZE
from semilearn.nets.wrn.wrn import WideResNet
from torchvision import transforms

# spec["pixels"] -> the per-channel input normalisation: lightly's default (ImageNet mean /
# std) or this project's [0, 1] -> [-1, 1] (`views.to_pm1`).
PIXELS = {"imagenet": IMAGENET_NORMALIZE, "pm1": {"mean": [0.5] * 3, "std": [0.5] * 3}}


def read_list(root: str, path: str) -> list[str]:
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def load(root: str, names: list[str]) -> list[Image.Image]:
  return [Image.open(os.path.join(root, n)).convert("RGB") for n in names]


def class_of(name: str, classes: list[str]) -> int:
  """Class index of `split/<class>/file`."""
  return classes.index(name.split("/")[1])


def contrast_accuracy(z0: torch.Tensor, z1: torch.Tensor) -> float:
  """Fraction of the 2B anchors whose positive has the highest cosine similarity among the
  other 2B - 1 projections (z0, z1: (B, D), the two views)."""
  z = torch.nn.functional.normalize(torch.cat([z0, z1]), dim=1)
  sim = z @ z.T
  sim.fill_diagonal_(-float("inf"))
  b = z0.shape[0]
  positive = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
  return (sim.argmax(1) == positive).float().mean().item()


class S4lWideResNet(torch.nn.Module):
  """This project's WRN trunk in PyTorch (s4l_jax/models/resnet_v2.py `WideResNet`): root 3x3
  conv without bias, pre-activation basic units (BN-ReLU `a` feeds both conv1 and, when the
  shape changes, the 1x1 projection shortcut), final BN-ReLU, average pool; BN eps 1e-3;
  conv kernels glorot-uniform (flax's `glorot_uniform` = torch's `xavier_uniform_` on convs).
  For swapping the trunk in lightly's run (`spec["trunk"] = "s4l_jax"`)."""

  def __init__(self, depth: int, width: int, bn_epsilon: float = 1e-3):
    super().__init__()
    bn = lambda c: torch.nn.BatchNorm2d(c, eps=bn_epsilon)
    conv = lambda i, o, k, s=1: torch.nn.Conv2d(i, o, k, s, (k - 1) // 2, bias=False)
    self.root_conv, units, c = conv(3, 16, 3), [], 16
    for b, stride in enumerate((1, 2, 2)):
      out = 16 * width * 2**b
      for u in range((depth - 4) // 6):
        s = stride if u == 0 else 1
        units.append(torch.nn.ModuleDict(dict(
            bn0=bn(c), conv1=conv(c, out, 3, s), bn1=bn(out), conv2=conv(out, out, 3),
            **({"proj": conv(c, out, 1, s)} if s > 1 or c != out else {}))))
        c = out
    self.units, self.final_bn, self.num_features = torch.nn.ModuleList(units), bn(c), c
    for m in self.modules():
      if isinstance(m, torch.nn.Conv2d):
        torch.nn.init.xavier_uniform_(m.weight)

  def forward(self, x, only_feat=True):
    del only_feat
    relu = torch.nn.functional.relu
    x = self.root_conv(x)
    for unit in self.units:
      a = relu(unit["bn0"](x))
      shortcut = unit["proj"](a) if "proj" in unit else x
      x = unit["conv2"](relu(unit["bn1"](unit["conv1"](a)))) + shortcut
    return relu(self.final_bn(x)).mean(dim=(2, 3))


class SimCLR(torch.nn.Module):
  """Trunk (pooled features) + projection head."""

  def __init__(self, spec: dict):
    super().__init__()
    if spec.get("trunk", "usb") == "s4l_jax":
      self.trunk = S4lWideResNet(spec["depth"], spec["width"])
    else:
      self.trunk = WideResNet(first_stride=1, num_classes=1, depth=spec["depth"],
                              widen_factor=spec["width"])
    for m in self.trunk.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.momentum = 1 - spec["bn_momentum"]  # torch: new = (1 - m) * old + m * batch
      if isinstance(m, torch.nn.LeakyReLU):
        m.negative_slope = spec["leaky_relu_slope"]
    dim = self.trunk.num_features
    self.head = SimCLRProjectionHead(dim, dim, spec["proj_dim"], num_layers=spec["proj_layers"],
                                     batch_norm=True)
    for m in self.head.modules():
      if isinstance(m, torch.nn.Linear):
        torch.nn.init.normal_(m.weight, std=0.01)
      if isinstance(m, torch.nn.BatchNorm1d):
        m.momentum, m.eps = 1 - spec["bn_momentum"], spec["head_bn_epsilon"]

  def features(self, x):
    return self.trunk(x, only_feat=True)

  def forward(self, x):
    return self.head(self.features(x))


def decayed(model: torch.nn.Module) -> list[torch.nn.Parameter]:
  """Conv and Linear weights (this project's `kernel_mask`); BN and biases are excluded."""
  return [m.weight for m in model.modules()
          if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


@torch.no_grad()
def features(model, images: list[Image.Image], normalize) -> np.ndarray:
  model.eval()
  out = []
  for i in range(0, len(images), 500):
    x = torch.stack([normalize(im) for im in images[i:i + 500]])
    out.append(model.features(x).numpy())
  return np.concatenate(out).astype(np.float32)


def main(spec_path: str):
  with open(spec_path) as f:
    spec = json.load(f)
  torch.set_num_threads(spec["threads"])
  seed = spec["seed"]
  random.seed(seed)
  np.random.seed(seed)
  torch.manual_seed(seed)
  root = spec["root"]
  classes = sorted(e.name for e in os.scandir(os.path.join(root, "train")) if e.is_dir())
  unlabeled = load(root, read_list(root, spec["unlabeled_list"]))
  size = unlabeled[0].size[0]
  pixels = PIXELS[spec.get("pixels", "imagenet")]
  transform = SimCLRTransform(input_size=size, cj_strength=spec["jitter_strength"],
                              min_scale=spec["min_scale"], gaussian_blur=spec["blur_prob"],
                              random_gray_scale=spec["grey_prob"], normalize=pixels)

  class Views(torch.utils.data.Dataset):
    def __len__(self):
      return len(unlabeled)

    def __getitem__(self, i):
      return transform(unlabeled[i])

  loader = torch.utils.data.DataLoader(Views(), batch_size=spec["batch"], shuffle=True,
                                       drop_last=True, num_workers=0)
  model = SimCLR(spec)
  decay_ids = {id(p) for p in decayed(model)}
  optimizer = torch.optim.SGD(
      [{"params": [p for p in model.parameters() if id(p) in decay_ids],
        "weight_decay": spec["weight_decay"]},
       {"params": [p for p in model.parameters() if id(p) not in decay_ids],
        "weight_decay": 0.0}], lr=spec["lr"], momentum=spec["momentum"])
  steps = spec["steps"]
  schedule = torch.optim.lr_scheduler.LambdaLR(  # optax.cosine_decay_schedule(lr, steps)
      optimizer, lambda k: 0.5 * (1 + np.cos(np.pi * min(k, steps) / steps)))
  criterion = NTXentLoss(temperature=spec["temperature"])
  contrast_curve, loss_curve, step = [], [], 0
  model.train()
  start = time.time()
  while step < steps:
    for (x0, x1) in loader:
      z = model(torch.cat([x0, x1]))  # one pass: BN over both views, as this project
      z0, z1 = z.chunk(2)
      loss = criterion(z0, z1)
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
      schedule.step()
      step += 1
      if step % spec["log_every"] == 0 or step == steps:
        contrast_curve.append([step, contrast_accuracy(z0.detach(), z1.detach())])
        loss_curve.append([step, loss.item()])
      if step == steps:
        break
  wall = time.time() - start

  normalize = transforms.Compose([transforms.ToTensor(),
                                  transforms.Normalize(pixels["mean"], pixels["std"])])
  bank_names = read_list(root, spec["bank_list"])
  test_names = sorted(os.path.join("test", c, e.name) for c in classes
                      for e in os.scandir(os.path.join(root, "test", c)) if e.is_file())
  np.savez(spec["features"],
           bank_x=features(model, load(root, bank_names), normalize),
           bank_y=np.array([class_of(n, classes) for n in bank_names]),
           test_x=features(model, load(root, test_names), normalize),
           test_y=np.array([class_of(n, classes) for n in test_names]))
  out = dict(contrast_curve=contrast_curve, loss_curve=loss_curve, s_per_step=wall / steps,
             wall_s=wall)
  with open(spec["out"], "w") as f:
    json.dump(out, f, indent=1)
  print(json.dumps(dict(s_per_step=out["s_per_step"], last=contrast_curve[-1])))


if __name__ == "__main__":
  main(sys.argv[1])
