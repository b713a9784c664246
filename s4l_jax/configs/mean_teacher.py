"""Mean Teacher (Tarvainen & Valpola 2017; S4L Table 2 at 10% ImageNet labels: README, Paper rows).

Args (`--config=configs/mean_teacher.py:dataset=digits`):
  dataset: imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all
  steps:   0 = the preset's budget; > 0 overrides the number of training steps

The student is the supervised rows' network and schedule (S4L's released
`config/supervised_imagenet_*.sh`; `small_data_preset` off ImageNet) with an unlabeled stream
(the whole train split, B_u = B_l) whose view takes two independent crops of each image, each
flipped: one for the student, one for the teacher.
The teacher is the EMA of the student with a half-life of one labeled epoch. Consistency:
softmax MSE with weight 8.0, ramped up over the first 40 % of training (Oliver et al. 2018's
WRN-28-2 setting, used for every dataset here). Unverified for ImageNet: the S4L paper quotes
the MT paper's ResNeXt-152 result and gives no settings of its own.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common
from s4l_jax.data import views


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals,
                             labeled_batch=256)
  config_lib.set_objective(c, "mean_teacher")
  common.supervised_preset(c, a.regime, a.labels)
  crop_op = views.INPUT_CROPS[c.input.crop]  # the preset's crop: inception or pad_crop
  c.input.unlabeled.update(batch_size=c.input.labeled.batch_size, view=f"{crop_op}*2|flip")
  c.ema_halflife_epochs = 1.0
  common.set_steps(a.steps, c)
  return c
