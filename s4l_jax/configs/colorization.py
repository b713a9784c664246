"""Self-supervised colorization pretraining on all train images (+ Linear / Fine-tune).

Args (`--config=configs/colorization.py:dataset=cifar10`):
  dataset: imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all; only picks the small labeled
           batch, whose colour images keep BN's moving averages (labels ignored)
  steps:   0 = the preset's budget; > 0 overrides the number of training steps

Zhang, Isola & Efros (2016), the classification variant: Lab, the network sees L, a dense
head (1x1 convolution on the trunk's last feature map: 8x8 cells for WRN at 32 px) predicts
each cell's mean ab over Q = 267 bins of a 10-unit grid (those sRGB reaches), soft targets on
the 5 nearest bins (sigma 5), class rebalancing lambda 0.5 under the running bin histogram
(`s4l_jax/objectives/colorization.py`). Not reproduced: their VGG-style full-resolution
network (ab at 1/4 of the input's side), annealed-mean decoding (only the loss matters here)
and the regression variant. Digits are grey (ab = 0 everywhere): the task is trivial there,
the row only checks that the method runs. ImageNet defaults reuse the rotation pretext recipe
(a guess). Downstream the network sees colour images (its BN statistics come from them).
Then: `configs/linear_eval.py` or `configs/finetune.py` with `pretrained=WORKDIR/export`.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=32)
  config_lib.set_objective(c, "colorization")
  c.input.unlabeled.batch_size = 256
  common.colorization_task(c)
  common.pretext_preset(c, a.regime)
  common.set_steps(a.steps, c)
  return c
