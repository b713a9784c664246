"""Linear evaluation of a pretrained trunk on the labeled subset ("Rotation / Exemplar + Linear").

Args (`--config=configs/linear_eval.py:pretrained=WORKDIR/export,dataset=digits`):
  pretrained: export dir of a `rotation` / `exemplar` run (required; its trunk and classes
              head initialise the model)
  dataset:    imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:     10pct (default) | 1pct | <int> | <int>perclass | all
  steps:      0 = the preset's budget; > 0 overrides the number of training steps

The network is the export's: its trunk architecture (export.json `model`: name, depth, width,
BatchNorm epsilon; `common.export_trunk`) replaces the preset's, so an export of any
width (a MOAM one, 2x wider on digits) fits; `--config.model.*` overrides still apply.

Frozen trunk (inference-mode BN, `trainable=heads`), logistic regression by the "classes"
head reading the global-average-pooled pre_logits through stop_gradient (revisit pools
adaptively to <= 9000-d instead).
The pretraining run's classes head, which had no loss, is its initial value. ImageNet
defaults follow revisit's linear eval where it applies (unverified): batch 512,
lr 0.1 x 512/256, no warm-up, decays at 30/50, end 70 epochs (of the labeled subset here).
"""
from s4l_jax import config_lib
from s4l_jax.configs import common


def get_config(arg=None):
  a = config_lib.parse_arg(arg, pretrained="", dataset="imagenet2012", labels="10pct", steps=0)
  if not a.pretrained:
    raise ValueError("linear_eval needs the pretrained export: "
                     "--config=configs/linear_eval.py:pretrained=WORKDIR/export")
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=512)
  config_lib.set_objective(c, "linear_eval")
  c.init_from = a.pretrained
  c.model.update(common.export_trunk(a.pretrained, missing_ok=True))
  c.model.heads = dict(classes=dict(dims=-1, stop_gradient=True))
  c.trainable = "heads"
  if a.regime == "paper":
    c.lr.warmup_epochs, c.lr.decay_epochs, c.total_epochs = 0.0, (30.0, 50.0), 70.0
    c.optimizer.weight_decay = 1e-4
  else:
    common.small_data_preset(c)
  common.set_steps(a.steps, c)
  return c
