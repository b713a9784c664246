"""Self-supervised rotation pretraining on all train images (for Rotation + Linear / Fine-tune).

Args (`--config=configs/rotation.py:dataset=digits`):
  dataset: imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all; only picks the small labeled
           batch, which the loss uses as further unlabeled images (labels ignored)
  steps:   0 = the preset's budget; > 0 overrides the number of training steps

The S4L pretraining configs are not released (methods.md 2.6). ImageNet defaults follow the
revisit repo's rotation recipe where it applies (unverified): 35 passes over the train split,
warm-up 5, decays at 15/25, lr 0.1 x B_u/256, here with B_u = 256 (x4 rotations) and the
S4L trunk (ResNet50v2 k=4, so that `linear_eval` / `finetune` load it); wd 1e-4 is a guess.
Passes are converted to S4L's labeled epochs. Then: `configs/linear_eval.py` or
`configs/finetune.py` with `pretrained=WORKDIR/export`.
"""
import math

from s4l_jax import config_lib
from s4l_jax.data import subsets

IMAGENET_TRAIN = 1_281_167


def imagenet_pass_schedule(c, labels: str, passes: float, warmup: float, decays):
  """Sets warm-up / decays / end given in passes over ImageNet's train split at B_u.

  The end is exact (`total_steps`); warm-up and decays are converted to S4L's labeled
  epochs with the subset size implied by `labels` (S4L's lists for 10pct / 1pct).
  """
  kind, value = subsets.parse_labels_spec(labels)
  num_labeled = {"10pct": 128_000, "1pct": 13_000}.get(labels) or {
      "all": IMAGENET_TRAIN, "pct": round((value or 0) * IMAGENET_TRAIN), "total": value,
      "perclass": 1000 * (value or 0)}[kind]
  steps_per_pass = IMAGENET_TRAIN / c.input.unlabeled.batch_size
  epochs_per_pass = steps_per_pass / config_lib.steps_per_epoch(num_labeled,
                                                                 c.input.labeled.batch_size)
  c.lr.warmup_epochs = warmup * epochs_per_pass
  c.lr.decay_epochs = tuple(d * epochs_per_pass for d in decays)
  c.total_epochs = passes * epochs_per_pass
  c.total_steps = math.ceil(passes * steps_per_pass)


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0)
  family = config_lib.dataset_family(a.dataset)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, labeled_batch=32)
  c.objective = "rotation"
  c.input.labeled.view = "rotate4"
  c.input.unlabeled = dict(batch_size=256, view="rotate4")
  # The classes head gets no loss; it keeps the export contract (predict -> class logits).
  c.model.heads = dict(classes=-1, rotations=4)
  config_lib.rotation_averaged_evals(c)
  if family == "imagenet2012":
    c.lr.base, c.lr.scale_batch_size, c.optimizer.weight_decay = 0.1, 0, 1e-4
    imagenet_pass_schedule(c, a.labels, passes=35, warmup=5, decays=(15, 25))
  else:
    config_lib.small_data_preset(c, family)
    c.input.labeled.batch_size = 8
    c.input.unlabeled.batch_size = 32 if family == "digits" else 64
  if a.steps:
    c.total_steps = a.steps
  return c
