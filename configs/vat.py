"""VAT on labeled + unlabeled images (S4L Table 1, "VAT"; methods.md 2.5d).

Args (`--config=configs/vat.py:labels=1pct,dataset=digits`):
  dataset: imagenet2012 (default, the paper's setting) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all
  steps:   0 = the preset's budget; > 0 overrides the number of training steps

ImageNet defaults are the paper's row (methods.md 2.6, `s4l:config/vat.sh`): B_l = B_u = 256,
lr 0.03 without batch scaling, wd 1e-3, warm-up 5, decays at 140/160/180, end 200 epochs
(100k steps), eps 40, w_vat 0.5, xi 1e-6, 1 power iteration, VAT on labeled images too.
1%: no released config; the supervised-1% schedule is used (700/800/900, end 1000 epochs;
unverified). Other datasets use `small_data_preset` with eps scaled to the same RMS
perturbation per input value as eps=40 over 224*224*3 = 150,528 values:
eps = 40 * sqrt(S*S*3 / 150528) = 40 * S / 224 (digits, S=16: 2.86; cifar10, S=32: 5.71).
"""
from s4l_jax import config_lib


def get_config(arg=None):
  return config_lib.vat_config(arg, entmin_weight=0.0)
