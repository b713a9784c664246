"""Self-training with Noisy Student (Xie et al. 2020): stages `teacher`, `student1..N`.

  teacher:   supervised on the labeled subset, noised as the students.
  student_i: the previous stage's export (`teacher="@<previous>"`) labels every train image
             (its clean, central view: `s4l_jax/pseudo_label.py`); the student is trained
             from scratch on ground truth where labeled and these pseudo-labels elsewhere,
             with noise, then teaches the next student.
Pseudo-labels (the paper's ImageNet + JFT settings): soft (the teacher's probabilities;
`--config.stages.<s>.pseudo_label_type=hard` for argmax), confidence threshold 0.3, class
balancing to about the unlabeled images per class (`pseudo_label_per_class`: the K most
confident, or duplicates up to K). Noise: dropout 0.5 before the classifier, stochastic
depth with survival 0.8 at the last residual unit (linear in depth), and RandAugment on the
labeled stream's crops (`<crop>|flip|randaugment(2, 27)`: 2 ops at the paper's fixed
magnitude 27, read on a 0..30 scale within FixMatch's op ranges: `data/ops/randaugment.py`).
Each student is `grow` x as wide as its teacher (the paper grows EfficientNet-B7 to L2);
models are the project's ResNet-50 v2 (ImageNet) and WRNs, not EfficientNet. By default the
labeled and pseudo-labelled images share one stream (MOAM step 2's); `pseudo_ratio=R` gives
the paper's separate batches instead: a stream `pseudo` (source pseudo) of R x the labeled
batch, with the labeled stream's view, and the loss mean xent(labeled) + mean xent(pseudo)
(`objectives/supervised.py`).

Args: dataset (imagenet2012), labels (10pct), iterations (N >= 1 students, the paper's 3),
grow (>= 1, width factor per iteration), steps (> 0: that many steps per stage), pseudo_ratio
(0: one shared stream; R >= 1: separate batches, regime=small only: the paper regime's
schedule counts epochs of the shared stream).
`regime=paper` (ImageNet's default): teacher as `supervised.py`; students as
`pseudo_label.py` (lr 0.1 @256, wd 1e-4, decays 30/60/90, end 100 epochs over all images).
`regime=small`: `small_data_preset`, students `STUDENT_STEPS` x its steps (they see ~10x the
teacher's images) and the dataset's `small.student_noise`: digits' tiny WRN-10-1 gets
lighter noise (dropout 0.2, survival 0.8 -> 0.9: the paper's was too strong for its teacher
in 400 steps; the measured stages are in docs/results.md).
Stage keys can be overridden: `--config.stages.student2.model.dropout=0.3`.
"""
import ml_collections

from s4l_jax import budget, config_lib
from s4l_jax.configs import common
from s4l_jax.data import datasets, views

NOISY_OPS = "flip|randaugment(2, 27)"  # after the dataset's crop op
PAPER_NOISE = (0.5, 0.8)  # (dropout, last unit's survival); regime=small: the dataset's
STUDENT_STEPS = 3  # regime=small: a student's steps / the small-data preset's


def stage_config(a, width_factor: float, teacher: str = ""):
  """One stage: supervised with noise, `width_factor` x the preset's width; a student of
  `teacher` (a `@stage`) when given."""
  family = datasets.get(a.dataset)
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals,
                             labeled_batch=256)
  c.input.labeled.view = f"{views.INPUT_CROPS[c.input.crop]}|{NOISY_OPS}"
  c.model.dropout, c.model.stochastic_depth = dict(
      paper=PAPER_NOISE, small=family.small.student_noise)[a.regime]
  key = "filters_factor" if c.model.name == "resnet50v2" else "width"
  c.model[key] = round(c.model[key] * width_factor)
  if not teacher:
    common.supervised_preset(c, a.regime, a.labels)
  else:
    c.teacher = teacher
    c.pseudo_label_type, c.pseudo_label_threshold = "soft", 0.3
    c.pseudo_label_per_class = family.pseudo_labels_per_class
    if a.regime == "paper":
      if a.pseudo_ratio:
        raise ValueError(f"Config arg pseudo_ratio={a.pseudo_ratio} needs regime=small (the "
                         "paper regime's schedule counts epochs of one shared stream)")
      common.student_paper_schedule(c)
    else:
      common.small_data_preset(c)
      budget.set_duration(c, total_steps=STUDENT_STEPS * c.total_steps)
    if a.pseudo_ratio:
      c.input.pseudo = dict(source="pseudo", view=c.input.labeled.view,
                            batch_size=a.pseudo_ratio * c.input.labeled.batch_size)
  common.set_steps(a.steps, c)
  return c


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", iterations=3,
                           grow=1.0, steps=0, pseudo_ratio=0)
  if a.iterations < 1:
    raise ValueError(f"Config arg iterations={a.iterations} must be >= 1 (students)")
  if a.grow < 1:
    raise ValueError(f"Config arg grow={a.grow} must be >= 1 (a student is no smaller)")
  if a.pseudo_ratio < 0:
    raise ValueError(f"Config arg pseudo_ratio={a.pseudo_ratio} must be >= 0")
  stages = {"teacher": stage_config(a, 1.0)}
  for i in range(1, a.iterations + 1):
    stages[f"student{i}"] = stage_config(a, a.grow ** i, teacher="@" + list(stages)[-1])
  c = ml_collections.ConfigDict()
  c.method = "noisy_student"
  c.run_stages = "all"
  c.stages = ml_collections.ConfigDict(stages)
  c.allow_config_change = False  # True: resume the stages under a changed config (warns)
  return c
