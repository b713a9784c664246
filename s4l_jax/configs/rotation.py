"""Self-supervised rotation pretraining on all train images (for Rotation + Linear / Fine-tune).

Args (`--config=configs/rotation.py:dataset=digits`):
  dataset: imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all; only picks the small labeled
           batch, which the loss uses as further unlabeled images (labels ignored)
  steps:   0 = the preset's budget; > 0 overrides the number of training steps

The S4L pretraining configs are not released (google-research/s4l). ImageNet defaults follow the
revisit repo's rotation recipe where it applies (unverified): 35 passes over the train split,
warm-up 5, decays at 15/25, lr 0.1 x B_u/256, here with B_u = 256 (x4 rotations) and the
S4L trunk (ResNet50v2 k=4, so that `linear_eval` / `finetune` load it); wd 1e-4 is a guess.
Warm-up, decays and end count passes over the unlabeled stream (`lr.epochs_of=unlabeled`,
`total_unlabeled_epochs`; `common.pretext_paper_schedule`). Then:
`configs/linear_eval.py` or `configs/finetune.py` with `pretrained=WORKDIR/export`.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=32)
  config_lib.set_objective(c, "rotation")
  c.input.labeled.view = "rotate4"
  c.input.unlabeled.update(batch_size=256, view="rotate4")
  # The classes head gets no loss; it keeps the export contract (predict -> class logits).
  c.model.heads = dict(classes=-1, rotations=4)
  common.rotation_averaged_evals(c)
  common.pretext_preset(c, a.regime)
  common.set_steps(a.steps, c)
  return c
