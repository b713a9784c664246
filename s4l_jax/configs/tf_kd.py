"""Teacher-free knowledge distillation (Yuan et al. 2020: KD acts as a learned label smoothing).

Args (`--config=configs/tf_kd.py:dataset=digits`, `...:teacher=virtual`):
  dataset: imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all
  steps:   0 = the presets' budgets; > 0: that many steps per stage
  teacher: self (default) | reversed | poor | virtual
    self:     Tf-KD-self, two stages in one command: `WORKDIR/teacher` trains the supervised
              row (`configs/supervised.py`), then `WORKDIR/student` trains a fresh copy of the
              same network with the `distill` objective against that frozen teacher:
              L = (1 - alpha) xent(labeled) + alpha T^2 soft-xent(teacher, student / T) on the
              unlabeled stream (the teacher sees the student's augmented images).
    reversed: Re-KD, the same two stages with a 2x wider student: the teacher is the weaker
              network ("the student teaches the teacher").
    poor:     De-KD, the same two stages with the teacher trained for 10 % of its steps.
    virtual:  Tf-KD-reg, one run, no teacher network: the `virtual_teacher` objective
              (a = correct_prob on the label, the rest evenly; labeled images only).
  alpha, temperature: the KD weight and temperature (default: the `virtual_teacher`
           objective's declared 0.5, 4.0: this project's choice; the paper tunes them per
           dataset and network)
  correct_prob: a of the virtual teacher (default 0.9, declared there; the paper asks a >= 0.9)
Re-running resumes at the stage and iteration where it stopped; `step=teacher|student` runs
one stage of the two-stage variants.
"""
import ml_collections

from s4l_jax import budget, config_lib, objectives
from s4l_jax.configs import common

TEACHERS = ("self", "reversed", "poor", "virtual")
POOR_FRACTION = 0.1  # De-KD: the teacher's share of the normal training length


def widen(c):
  """The same trunk twice as wide (WRN width, ResNet-50 v2 filters, ResNet v1 multiplier)."""
  key = {"wrn": "width", "resnet50v2": "filters_factor", "resnet_v1": "width_multiplier"}
  c.model[key[c.model.name]] *= 2


def get_config(arg=None):
  kd = objectives.loss_defaults("virtual_teacher")  # alpha, temperature, correct_prob
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0,
                           teacher="self", step="all", **kd)
  if a.teacher not in TEACHERS:
    raise ValueError(f"teacher={a.teacher!r} unknown; valid: {', '.join(TEACHERS)}")
  if a.teacher == "virtual":
    c = common.supervised_row(a)
    config_lib.set_objective(c, "virtual_teacher")
    c.loss.update(dict(alpha=a.alpha, temperature=a.temperature, correct_prob=a.correct_prob))
    return c
  teacher, student = common.supervised_row(a), common.supervised_row(a)
  if a.teacher == "poor":
    for key in budget.DURATION_KEYS:
      teacher[key] = type(teacher[key])(teacher[key] * POOR_FRACTION)
  if a.teacher == "reversed":
    widen(student)
  config_lib.set_objective(student, "distill")
  student.frozen_teacher = "@teacher"
  student.input.unlabeled.batch_size = student.input.labeled.batch_size
  student.input.unlabeled.view = student.input.labeled.view
  student.loss.update(dict(temperature=a.temperature, distill_weight=a.alpha,
                           sup_weight=1.0 - a.alpha, scale_by_temperature_squared=True))
  c = ml_collections.ConfigDict()
  c.method = "tf_kd"
  c.run_stages = a.step
  c.stages = ml_collections.ConfigDict(dict(teacher=teacher, student=student))
  c.allow_config_change = False  # True: resume the stages under a changed config (warns)
  return c
