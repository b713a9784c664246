"""PIRL pretraining (Misra & van der Maaten 2020) on all train images (+ Linear / Fine-tune).

Args (`--config=configs/pirl.py:dataset=digits`):
  dataset: cifar10 | digits (default) | folder:PATH (with `--config.loss.bank_size=N`, N = the
           train images); the bank needs each image's index, which the in-memory pipeline
           carries (ImageNet's tf.data one does not: validation rejects it)
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all (the labeled batch is unused)
  steps:   0 = the preset's budget; > 0 overrides the number of training steps
  regime:  ignored: one recipe, `regime=small`'s (the paper's ImageNet run is not reproduced)

Paper settings (`s4l_jax/objectives/pirl.py`): 128-d unit embeddings f (image) and g (the
jigsaw transform's 9 tiles through the shared trunk, concatenated, projected), a memory bank
of every train image's moving average of f (momentum 0.5), NCE with lambda 0.5; the paper's
32,000 negatives become 512 here (digits: 1,437 images; CIFAR-10: 4,096). Temperature 0.5,
not the paper's 0.07 (`--config.loss.temperature=0.07`): NCE's normaliser Z is estimated at
step 0, when the bank holds random unit rows (cosines ~ 0), and then kept; at 0.07 a learned
negative at cosine 0.5 then costs 0.74 nats (4.4 at 0.8), 381 over 512 negatives, so the
loss only pushes every image away from the others, similar digits included; at 0.5 it costs
0.005 (the digits probes at both: docs/results.md, Pretext tasks). (The paper's N / |D| is 0.025, 14x
smaller than digits' 0.36.) g is one linear layer on the concatenated tile features. Then:
`configs/linear_eval.py` or `configs/finetune.py` with `pretrained=WORKDIR/export`.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common
from s4l_jax.data import datasets

def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="digits", labels="10pct", steps=0)
  family = datasets.get(a.dataset)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=8)
  config_lib.set_objective(c, "pirl")
  common.small_data_preset(c)
  c.input.unlabeled.batch_size = c.input.labeled.batch_size
  c.input.labeled.batch_size = 8
  c.model.heads = dict(classes=-1, pirl_image=c.loss.embed_dim, pirl_tiles=9 * c.loss.embed_dim)
  c.loss.bank_size = family.train_images  # one bank row per train image
  c.loss.num_negatives = family.small.negatives
  common.set_steps(a.steps, c)
  return c
