"""Supervised baseline on the labeled subset only (S4L Table 1, "Supervised").

Args (`--config=configs/supervised.py:labels=1pct,dataset=digits`):
  dataset: imagenet2012 (default, the paper's setting) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all
  steps:   0 = the preset's budget; > 0 overrides the number of training steps
  fidelity: default | paper: ImageNet's per-TPU-core BN of the paper's v3-8 (groups of 32)

ImageNet defaults are the paper's rows (`s4l:config/supervised_imagenet_*.sh`): 10%: lr 0.1,
wd 1e-3, warm-up 5, decays at 140/160/180, end 200 epochs (100k steps at batch 256); 1%: lr
0.01, wd 1e-2, decays 700/800/900, end 1000 epochs (50k steps), and HSV noise on the single
crops: labeled view "inception_crop|flip|hsv_noise", as the released S4L config
supervised_imagenet_1p.sh (its `hsvnoise` is `views.hsv_noise`). `regime=small` (the
default off ImageNet): `common.small_data_preset`.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0,
                           fidelity="default")
  return common.supervised_row(a)
