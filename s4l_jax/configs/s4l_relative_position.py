"""S4L-Relative-Position: relative-position prediction on the unlabeled stream (all train
images), class loss on labeled images.

Args (`--config=configs/s4l_relative_position.py:labels=1pct,dataset=digits`):
  dataset: imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all
  steps:   0 = the preset's budget; > 0 overrides the number of training steps

The task is `configs/relative_position.py`'s; `L = L_cls + loss.position_weight * L_pos`
(`s4l_jax/objectives/s4l_relative_position.py`). No paper ran it: ImageNet defaults are
S4L-Rotation's 10% row (B_l = B_u = 256, lr 0.03 unscaled, wd 1e-3, 200 epochs), a guess.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=256)
  config_lib.set_objective(c, "s4l_relative_position")
  c.input.unlabeled.batch_size = 256
  common.relative_position_task(c)
  common.s4l_variant_preset(c, a.regime)
  common.set_steps(a.steps, c)
  return c
