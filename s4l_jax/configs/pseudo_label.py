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


def get_config(arg=None):
  a = config_lib.parse_arg(arg, teacher="", dataset="imagenet2012", labels="10pct", steps=0,
                           fidelity="default")
  if not a.teacher:
    raise ValueError("pseudo_label needs a teacher export: "
                     "--config=configs/pseudo_label.py:teacher=WORKDIR/export")
  family = config_lib.dataset_family(a.dataset)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals,
                             labeled_batch=256 if family == "imagenet2012" else 64)
  c.objective = "supervised"
  c.teacher = a.teacher
  if family == "imagenet2012":
    c.optimizer.weight_decay = 1e-4
    c.lr.decay_epochs, c.total_epochs = (30.0, 60.0, 90.0), 100.0
  else:
    config_lib.small_data_preset(c, family)
  config_lib.per_core_fidelity(c, "pseudo_label", a.fidelity)
  if a.steps:
    config_lib.set_duration(c, total_steps=a.steps)
  return c
