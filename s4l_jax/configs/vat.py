"""VAT on labeled + unlabeled images (S4L Table 1, "VAT"; `s4l:semi_supervised/vat.py`).

Args (`--config=configs/vat.py:labels=1pct,dataset=digits`):
  dataset: imagenet2012 (default, the paper's setting) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all
  steps:   0 = the preset's budget; > 0 overrides the number of training steps
  hparams_1pct: 10pct (default) | supervised: with labels=1pct on ImageNet, the 10% row's lr
           and wd, or lr / 10 and wd x 10 as the released supervised 1% row (both guesses)
  fidelity: default | paper: ImageNet's per-TPU-core BN of the paper's v3-32 (groups of
           8 + 8 = 16 images, also in the perturbed passes)

ImageNet defaults are the paper's row (`s4l:config/vat.sh`): B_l = B_u = 256,
lr 0.03 without batch scaling, wd 1e-3, warm-up 5, decays at 140/160/180, end 200 epochs
(100k steps), eps 40, w_vat 0.5, xi 1e-6, 1 power iteration, VAT on labeled images too.
1%: no released config; guessed: the supervised-1% schedule (700/800/900, end 1000 epochs)
with lr 0.03, wd 1e-3 (hparams_1pct=supervised: 0.003, 1e-2). `loss.vat_normalization`:
exact_eps (|r_adv| = eps) | released (tf l2_normalize, eps 1e-12: shorter r_adv, README). `regime=small` (the default off ImageNet) uses `common.small_data_preset` with eps scaled to the same RMS
perturbation per input value as eps=40 over 224*224*3 = 150,528 values:
eps = 40 * sqrt(S*S*3 / 150528) = 40 * S / 224 (digits, S=16: 2.86; cifar10, S=32: 5.71).
"""
from s4l_jax.configs import common


def get_config(arg=None):
  return common.vat_row(arg, entmin_weight=0.0)
