"""Self-supervised jigsaw pretraining on all train images (for Jigsaw + Linear / Fine-tune).

Args (`--config=configs/jigsaw.py:dataset=digits`):
  dataset: imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all; only picks the small labeled
           batch, whose whole images keep BN's moving averages (labels ignored)
  steps:   0 = the preset's budget; > 0 overrides the number of training steps
  permutations: P, the size of the greedy maximal-Hamming permutation set (default 100)

Noroozi & Favaro (2016): a 3x3 grid of cells on the crop, a tile of 64/75 of the cell side at
a random position in each (gap + jitter; 16 px digits: 5 px cells, 4 px tiles; 32 px: 10, 8;
224 px: 74, 63), each tile normalised by its own mean and std, shuffled by one of the P
permutations (`loss.permutations`, generated deterministically and stored in the config), a
shared trunk over the 9 tiles and a linear P-way head on their concatenated features. The
original's fc6/fc7 layers over the concatenation are not reproduced (one linear layer). ImageNet
defaults reuse the rotation pretext recipe (`common.pretext_paper_schedule`, lr 0.1,
wd 1e-4; a guess). Then: `configs/linear_eval.py` or `configs/finetune.py` with
`pretrained=WORKDIR/export`.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0,
                           permutations=common.JIGSAW_PERMUTATIONS)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=32)
  config_lib.set_objective(c, "jigsaw")
  c.input.unlabeled.batch_size = 256
  common.jigsaw_task(c, a.permutations)
  common.pretext_preset(c, a.regime)
  common.set_steps(a.steps, c)
  return c
