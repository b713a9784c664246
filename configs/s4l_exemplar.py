"""S4L-Exemplar: batch-hard triplet on 8 views of labeled + unlabeled images, class loss.

Args (`--config=configs/s4l_exemplar.py:labels=1pct,dataset=digits`):
  dataset: imagenet2012 (default, the paper's setting) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all
  steps:   0 = the preset's budget; > 0 overrides the number of training steps

ImageNet defaults are the paper's 10% row (methods.md 2.6, `s4l_exemplar.sh`): B_l = B_u = 512
images (x8 views = 8,192 forward images), lr 0.1 without batch scaling, wd 1e-3, warm-up 10,
decays at 140/160/180, end 200 epochs (50k steps), triplet weight 1.0, embedding dim 1000.
The triplet runs over each stream's global batch; `loss.triplet_groups` = number of cores
(32 on the README's v3-32) restores the per-core triplet, `loss.exemplar_id_quirk=True` the
released code's identity bug. labels=1pct takes the supervised-1% schedule (unverified).
"""
from s4l_jax import config_lib


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0)
  family = config_lib.dataset_family(a.dataset)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, labeled_batch=512)
  c.objective = "s4l_exemplar"
  c.input.labeled.view = "exemplar8"
  c.input.unlabeled = dict(batch_size=512, view="exemplar8")
  c.loss.triplet_weight = 1.0
  c.loss.embed_dim = 1000  # The head follows overrides of this key (a FieldReference).
  c.loss.triplet_groups = 1
  c.loss.exemplar_id_quirk = False
  if family == "imagenet2012":
    c.lr.base, c.lr.scale_batch_size, c.lr.warmup_epochs = 0.1, 0, 10.0
    if a.labels == "1pct":
      config_lib.one_percent_schedule(c)
  else:
    config_lib.small_data_preset(c, family)
    batch = 16 if family == "digits" else 32  # x8 views per stream.
    c.input.labeled.batch_size = c.input.unlabeled.batch_size = batch
    c.loss.embed_dim = 128
  c.model.heads = dict(classes=-1, embeddings=c.loss.get_ref("embed_dim"))
  if a.steps:
    config_lib.set_duration(c, total_steps=a.steps)
  return c
