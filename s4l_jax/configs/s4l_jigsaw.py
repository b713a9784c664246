"""S4L-Jigsaw: jigsaw prediction on the unlabeled stream (all train images), class loss on
labeled images.

Args (`--config=configs/s4l_jigsaw.py:labels=1pct,dataset=digits`):
  dataset: imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all
  steps:   0 = the preset's budget; > 0 overrides the number of training steps
  permutations: P, the size of the greedy maximal-Hamming permutation set (default 100)

The jigsaw task is `configs/jigsaw.py`'s; `L = L_cls + loss.jigsaw_weight * L_jigsaw`
(`s4l_jax/objectives/s4l_jigsaw.py`). No paper ran S4L-Jigsaw: ImageNet defaults are
S4L-Rotation's 10% row (B_l = B_u = 256, lr 0.03 unscaled, wd 1e-3, 200 epochs), a guess.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0,
                           permutations=common.JIGSAW_PERMUTATIONS)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=256)
  config_lib.set_objective(c, "s4l_jigsaw")
  c.input.unlabeled.batch_size = 256
  common.jigsaw_task(c, a.permutations)
  common.s4l_variant_preset(c, a.regime)
  common.set_steps(a.steps, c)
  return c
