"""S4L-Rotation: rotation prediction on labeled + unlabeled images, class loss on labeled.

Args (`--config=configs/s4l_rotation.py:labels=1pct,dataset=digits`):
  dataset: imagenet2012 (default, the paper's setting) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all
  steps:   0 = the preset's budget; > 0 overrides the number of training steps
  hparams_1pct: 10pct (default) | supervised: with labels=1pct on ImageNet, the 10% row's lr
           and wd, or lr / 10 and wd x 10 as the released supervised 1% row (both guesses)
  fidelity: default | paper: ImageNet's per-TPU-core BN of the paper's v3-32 (groups of
           (8 + 8) x 4 = 64 images, `common.per_core_fidelity`)

ImageNet defaults are the paper's 10% row (`s4l:config/s4l_rotation.sh`): B_l = B_u = 256
images (x4 rotations = 2,048 forward images), lr 0.03 without batch scaling, wd 1e-3,
warm-up 5, decays at 140/160/180, end 200 epochs (100k steps). The 1% row is not released:
labels=1pct takes the supervised-1% schedule (decays 700/800/900, end 1000) with lr 0.03 and
wd 1e-3 (hparams_1pct=supervised: 0.003 and 1e-2); all of it is a guess.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common
from s4l_jax.data import datasets


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0,
                           hparams_1pct="10pct", fidelity="default")
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=256)
  config_lib.set_objective(c, "s4l_rotation")
  c.input.labeled.view = "rotate4"
  c.input.unlabeled.update(batch_size=256, view="rotate4")
  c.model.heads = dict(classes=-1, rotations=4)
  common.rotation_averaged_evals(c)
  if a.regime == "paper":
    c.lr.base, c.lr.scale_batch_size = 0.03, 0
    common.unreleased_one_percent_preset(c, a.labels, a.hparams_1pct)
  else:
    common.small_data_preset(c)
    batch = datasets.get(a.dataset).small.batch // 2  # x4 rotations per stream.
    c.input.labeled.batch_size = c.input.unlabeled.batch_size = batch
  common.per_core_fidelity(c, "s4l_rotation", a.fidelity)
  common.set_steps(a.steps, c)
  return c
