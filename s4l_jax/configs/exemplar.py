"""Self-supervised exemplar pretraining on all train images (for Exemplar + Linear / Fine-tune).

Args (`--config=configs/exemplar.py:dataset=digits`):
  dataset: imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all; only picks the small labeled
           batch, which the loss uses as further unlabeled images (labels ignored)
  steps:   0 = the preset's budget; > 0 overrides the number of training steps

The S4L pretraining configs are not released (google-research/s4l). ImageNet defaults (unverified):
the revisit schedule (35 passes, warm-up 5, decays 15/25) with S4L-Exemplar's loss and sizes:
ResNet50v2 k=4, 8 views, B_u = 512, batch-hard soft-margin triplet on a 1000-d embedding
normalised per example (revisit: ResNet50 v1 k=12, semi-hard margin 0.5, batch-axis
normalisation), lr 0.1 without scaling; wd 1e-4 is a guess.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=32)
  config_lib.set_objective(c, "exemplar")
  c.input.labeled.view = "exemplar8"
  c.input.unlabeled.update(batch_size=512, view="exemplar8")
  # The classes head gets no loss; it keeps the export contract (predict -> class logits).
  common.exemplar_loss(c, a.regime)
  common.pretext_preset(c, a.regime, unlabeled_fraction=0.5)  # x8 views an image
  common.set_steps(a.steps, c)
  return c
