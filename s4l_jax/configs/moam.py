"""MOAM (S4L Table 2): three stages in one command, `WORKDIR/step1..3`.

  step1: S4L-Rotation + VAT + EntMin (0.4 rot / 0.3 cls / 0.3 VAT eps 32 / 0.3 EntMin),
         4x wide ResNet-50 v2 (filters_factor 16), global BN, Polyak averaging
         (half-life one epoch, decay 0.5**(1/steps_per_epoch)); lr 0.2 @256 -> 0.1,
         wd 2e-4, warm-up 10, decays 100/150/190, end 200 epochs (`s4l:config/moam_step_1.sh`).
  step2: pseudo-label every train image with the step-1 (EMA) export, retrain the same
         network from scratch on ground truth + pseudo-labels (pseudo_labels.sh recipe:
         lr 0.1 @256, wd 1e-4, warm-up 5, decays 30/60/90, end 100 epochs over all images).
  step3: fine-tune the step-2 network on the labeled subset only.
The official code released only step 1; the step-2/3 hyper-parameters are unverified (the
paper gives none): on ImageNet step 3 uses lr 0.01, wd 1e-4, 30 labeled epochs, decays at
20/25. Off ImageNet every stage uses `small_data_preset` with a 2x wider WRN than the
baselines, and step 1 a 3x learning rate (its class loss has weight 0.3).

Args: dataset (imagenet2012), labels (10pct), step (0 = all three; 1|2|3 = that one; an
earlier step's export must already exist), steps (> 0: that many steps per stage).
Re-running resumes at the stage and iteration where it stopped. Stage keys can be
overridden: `--config.stages.step1.lr.base=0.1`.
"""
import ml_collections

from s4l_jax import config_lib
from s4l_jax.configs import common


def stage_config(objective, a, batch):
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, labeled_batch=batch,
                             evals=a.evals)
  config_lib.set_objective(c, objective)
  return c


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", step=0, steps=0)
  if not 0 <= a.step <= 3:
    raise ValueError(f"step={a.step} must be 0 (all three steps) or 1..3")

  s1 = stage_config("moam_step1", a, 128)
  s1.input.labeled.view = s1.input.unlabeled.view = "rotate4"
  s1.model.heads = dict(classes=-1, rotations=4)
  s1.ema_halflife_epochs = 1.0
  common.rotation_averaged_evals(s1)

  s2 = stage_config("supervised", a, 256)
  s2.teacher = "@step1"

  s3 = stage_config("supervised", a, 256)
  s3.init_from = "@step2"

  if a.regime == "paper":
    for s in (s1, s2, s3):
      s.model.filters_factor = 16
    s1.lr.base, s1.optimizer.weight_decay = 0.2, 2e-4
    s1.lr.warmup_epochs, s1.lr.decay_epochs = 10.0, (100.0, 150.0, 190.0)
    common.student_paper_schedule(s2)
    s3.lr.base, s3.optimizer.weight_decay, s3.lr.warmup_epochs = 0.01, 1e-4, 0.0
    s3.lr.decay_epochs, s3.total_epochs = (20.0, 25.0), 30.0
  else:
    for s in (s1, s2, s3):
      common.small_data_preset(s)
      s.model.width *= 2  # the paper's MOAM net is wider than the baselines' (4x there)
    # Class loss weight 0.3: 3x the preset lr, as the paper's MOAM lr (0.1) is ~3x S4L's.
    s1.lr.base *= 3
    s1.loss.vat_eps *= (s1.input.image_size ** 2 * 3 / 150528) ** 0.5  # same RMS as 224 px
  s1.input.unlabeled.batch_size = s1.input.labeled.batch_size
  common.set_steps(a.steps, s1, s2, s3)

  c = ml_collections.ConfigDict()
  c.method = "moam"
  c.run_stages = "all" if a.step == 0 else f"step{a.step}"
  c.stages = ml_collections.ConfigDict(dict(step1=s1, step2=s2, step3=s3))
  c.allow_config_change = False  # True: resume the stages under a changed config (warns)
  return c
