"""Pseudo-label student (S4L Table 1, "Pseudo-labels"; `s4l:pseudo_labeling/`).

The teacher (an export of a supervised run on the same labels) labels every train image with
argmax of its central, unrotated view; a student is trained from scratch on ground truth
where labeled and pseudo-labels elsewhere. No confidence threshold by default, as in the
paper (`--config.pseudo_label_threshold=0.9` keeps only confident pseudo-labels).

Args: teacher=WORKDIR/export (required), dataset (imagenet2012), labels (10pct), steps,
fidelity (default | paper: ImageNet's per-TPU-core BN of the paper's v3-8, groups of 32).
ImageNet: batch 256, lr 0.1 @256, wd 1e-4, warm-up 5, decays 30/60/90, end 100 epochs over
all 1,281,167 images (~500k steps), `s4l:config/pseudo_labels.sh`.
"""
from s4l_jax import config_lib
from s4l_jax.configs import common


def get_config(arg=None):
  a = config_lib.parse_arg(arg, teacher="", dataset="imagenet2012", labels="10pct", steps=0,
                           fidelity="default")
  if not a.teacher:
    raise ValueError("pseudo_label needs a teacher export: "
                     "--config=configs/pseudo_label.py:teacher=WORKDIR/export")
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals,
                             labeled_batch=256)
  c.teacher = a.teacher
  if a.regime == "paper":
    common.student_paper_schedule(c)
  else:
    common.small_data_preset(c)
  common.per_core_fidelity(c, "pseudo_label", a.fidelity)
  common.set_steps(a.steps, c)
  return c
