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


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0)
  family = config_lib.dataset_family(a.dataset)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=32)
  c.objective = "exemplar"
  c.input.labeled.view = "exemplar8"
  c.input.unlabeled = dict(batch_size=512, view="exemplar8")
  c.loss.embed_dim = 1000  # The head follows overrides of this key (a FieldReference).
  c.loss.triplet_groups = 1
  c.loss.exemplar_id_quirk = False
  config_lib.pretext_preset(c, family, unlabeled_batch=(16, 32))
  if family != "imagenet2012":
    c.loss.embed_dim = 128
  # The classes head gets no loss; it keeps the export contract (predict -> class logits).
  c.model.heads = dict(classes=-1, embeddings=c.loss.get_ref("embed_dim"))
  if a.steps:
    config_lib.set_duration(c, total_steps=a.steps)
  return c
