"""Multi-task pretext learning: any of rotation, exemplar, jigsaw, relative position on one
trunk, a head per task; with `s4l=true` the class loss too (S4L-Multi).

Args (`--config=configs/multitask.py:dataset=digits,tasks=rotation+jigsaw,s4l=true`):
  dataset: imagenet2012 (default) | cifar10 | digits | folder:PATH
  labels:  10pct (default) | 1pct | <int> | <int>perclass | all
  steps:   0 = the preset's budget; > 0 overrides the number of training steps
  tasks:   '+'-joined subset of rotation, exemplar, jigsaw, relative_position (default:
           rotation+jigsaw+relative_position); each gets weight 1 (`loss.<task>_weight`, e.g.
           `--config.loss.jigsaw_weight=0.5`; the keys are `objectives/multitask.TASKS`)
  s4l:     false (default): pretext tasks only (then linear_eval / finetune from the export);
           true: + the class loss on the labeled images (`loss.class_weight = 1`)
  permutations: P of the jigsaw task (default 100)

Doersch & Zisserman (2017) sum the tasks' losses on a shared ResNet-101 with one head per task
(relative position + colorization beat either alone, top-5 of a linear classifier on ImageNet:
README.md, Paper rows). The tasks' settings are those of `configs/rotation.py`, `exemplar.py`,
`jigsaw.py` and `relative_position.py`. ImageNet defaults: the pretext recipe
(`common.pretext_paper_schedule`) without s4l, S4L-Rotation's 10% row with it (guesses).
"""
from s4l_jax import config_lib
from s4l_jax.configs import common

TASK_WEIGHTS = {"rotation": "rotation_weight", "exemplar": "triplet_weight",
                "jigsaw": "jigsaw_weight", "relative_position": "position_weight"}


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0,
                           tasks="rotation+jigsaw+relative_position", s4l=False,
                           permutations=common.JIGSAW_PERMUTATIONS)
  tasks = a.tasks.split("+")
  unknown = sorted(set(tasks) - set(TASK_WEIGHTS))
  if unknown or not tasks:
    raise ValueError(f"tasks={a.tasks!r}: unknown {unknown}; valid: '+'-joined "
                     f"{', '.join(TASK_WEIGHTS)}")
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=256)
  config_lib.set_objective(c, "multitask")
  c.input.unlabeled.batch_size = 256
  c.model.heads = dict(classes=-1)
  for task in tasks:  # the others keep weight 0 (off)
    c.loss[TASK_WEIGHTS[task]] = 1.0
  c.loss.class_weight = float(a.s4l)
  if "rotation" in tasks:
    c.model.heads.rotations = 4
  if "exemplar" in tasks:
    c.model.heads.embeddings = common.EXEMPLAR_EMBED_DIMS[a.regime]
  if "jigsaw" in tasks:
    common.jigsaw_task(c, a.permutations)
  if "relative_position" in tasks:
    common.relative_position_task(c)
  c.input.unlabeled.view = "exemplar8" if "exemplar" in tasks else "train"
  # paper: the pretext row takes the pretext rows' recipe; small: both the S4L variants'.
  if a.regime == "paper" and not a.s4l:
    common.pretext_preset(c, a.regime)
  else:
    common.s4l_variant_preset(c, a.regime)
  common.set_steps(a.steps, c)
  return c
