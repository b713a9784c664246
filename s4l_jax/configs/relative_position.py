"""Self-supervised relative-position pretraining on all train images (+ Linear / Fine-tune).

Args (`--config=configs/relative_position.py:dataset=digits`):
  dataset: imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all; only picks the small labeled
           batch, whose whole images keep BN's moving averages (labels ignored)
  steps:   0 = the preset's budget; > 0 overrides the number of training steps

Doersch, Gupta & Efros (2015): the centre patch and one of its 8 neighbours on a 3x3 grid,
with a gap and a random jitter (here the jigsaw grid's geometry, `views.grid_geometry`: a tile
of 64/75 of the cell side at a random place in its cell; 16 px digits: 4 px patches; the paper's
96 px patches, 48 px gap and 7 px jitter would leave 3 px patches at 16 px), colour dropping
against chromatic aberration (`views.color_drop`), a shared trunk over both patches and an
8-way head on their concatenated features (one linear layer, not the paper's fc6-fc8).
ImageNet defaults reuse the rotation pretext recipe (a guess). Then: `configs/linear_eval.py`
or `configs/finetune.py` with `pretrained=WORKDIR/export`.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=32)
  config_lib.set_objective(c, "relative_position")
  c.input.unlabeled.batch_size = 256
  common.relative_position_task(c)
  common.pretext_preset(c, a.regime)
  common.set_steps(a.steps, c)
  return c
