"""S4L-Colorization: colorization on the unlabeled stream (all train images), class loss on
labeled images.

Args (`--config=configs/s4l_colorization.py:labels=1pct,dataset=cifar10`):
  dataset: imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all
  steps:   0 = the preset's budget; > 0 overrides the number of training steps

The colorization task is `configs/colorization.py`'s (the dense head fits the joint step: one
extra pass of the unlabeled images' L channel); `L = L_cls + loss.color_weight * L_color`
(`s4l_jax/objectives/s4l_colorization.py`). No paper ran S4L-Colorization: ImageNet defaults
are S4L-Rotation's 10% row (a guess). Digits are grey: the colorization term is trivial there.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=256)
  config_lib.set_objective(c, "s4l_colorization")
  c.input.unlabeled.batch_size = 256
  common.colorization_task(c)
  common.s4l_variant_preset(c, a.regime)
  common.set_steps(a.steps, c)
  return c
