"""SimCLRv2 (Chen et al. 2020): pretrain, fine-tune from the projection head, distill; three
stages in one command, `WORKDIR/pretrain`, `WORKDIR/finetune`, `WORKDIR/distill`.

  pretrain: NT-Xent (temperature 0.1) on two `simclr2` views of every train image (the
            unlabeled stream plus the labeled one, negatives from the whole global batch),
            3-layer projection head (hidden width = encoder width, no Dense bias, BN + ReLU,
            128-d output with BN without beta, Dense init N(0, 0.01^2)); a linear classifier
            on stop_gradient(encoder output) learns from the labeled images alongside (SimCLR
            TF2's linear eval while pretraining; it never moves the encoder). LARS (momentum
            0.9, eta 0.001; BN, biases and the classifier excluded from weight decay / trust
            ratio as SimCLR), lr 0.1 * sqrt(B) (the SimCLRv2 value the author gives in
            simclr#77; the README's v1 command uses 0.075), warm-up 5 % of the run, cosine
            to 0, wd 1e-4, global BN (momentum 0.9, eps 1e-5).
  finetune: the whole network from the pretrained encoder and the FIRST projection layer
            (`ft_proj_selector=1`): the classifier reads `proj_1` and starts at zero; LARS,
            lr 0.005 * sqrt(B) (0.16 at B = 1024), no warm-up, no weight decay, cosine;
            60 labeled epochs at 1 %, 30 at 10 %; crop + flip only.
  distill:  a student trained from scratch on the unlabeled images against the fine-tuned
            network's soft predictions (temperature 1, pure distillation), the teacher frozen
            and fed the same augmented batch; same architecture (self-distillation) or
            ResNet-50 1x (`student=r50_1x`); LARS as pretraining (unverified: the paper gives
            ~400 epochs, the schedule, batch and wd of pretraining; crop + flip).
ImageNet: B = 4096 source images per pretraining step (3584 unlabeled + 512 labeled), 800
epochs over the train split (unverified: paper only). Label subsets: `labels=1pct|10pct` draw
per class here; the SimCLR lists are `labels=file:PATH` (tfds `imagenet2012_subset`).
Off ImageNet (digits, cifar10, folder:) every stage trains the dataset's WRN preset with a
step budget that runs on a CPU (digits: under a minute), the projection head at its width;
the views take the preset's crop (`input.crop`: pad-and-crop on cifar10 / digits): with
SimCLR's crop (area 0.08-1) the digits pretraining stayed above the chance-level loss for all
400 steps (its linear eval: docs/results.md); set
`--config.stages.pretrain.input.unlabeled.view='simclr_crop*2|simclr_augment'` (and
`labeled.view`) to use it.

Memory (`memory=K`, K > 0; the paper: 65536): pretraining adds SimCLRv2's MoCo-style queue of
K negatives from a memory network = the EMA of the weights, `ema_decay` 0.999
(`loss.memory_size`, s4l_jax/objectives/simclr.py; the paper's +~1% at 1% labels, not in the
released code). With the EMA on, the stage evaluates and exports the EMA weights (the memory
network), as every config with EMA does.

Args: dataset (imagenet2012), labels (10pct), model (r50_1x | r50_2x_sk | r152_3x_sk;
ImageNet only), student (same | r50_1x), step (0 = all three; 1|2|3 = that one: an earlier
stage's export must exist), steps (> 0: that many steps per stage), memory (0 = off; K > 0:
the queue's size), pretrained (an export, e.g. a released checkpoint converted by
`python -m s4l_jax.convert simclrv2` with --head=supervised or projection: no pretraining
stage; fine-tuning starts from its trunk and proj_1 with its architecture, as does the
student with student=same; step 0 = fine-tune and distill, 2|3 = one of them).
Re-running resumes at the stage and step where it stopped; stage keys can be overridden:
`--config.stages.finetune.lr.base=0.01`.
"""
import ml_collections

from s4l_jax import budget, config_lib
from s4l_jax.configs import common
from s4l_jax.data import datasets, views
from s4l_jax.models import presets

STAGES = ("pretrain", "finetune", "distill")
IMAGENET_MODELS = ("r50_1x", "r50_2x_sk", "r152_3x_sk")
STUDENTS = ("same", "r50_1x")


def start_from_export(stages: dict, export_dir: str, student: str):
  """`pretrained=EXPORT_DIR`: drops the pretraining stage; fine-tuning starts from the
  export's trunk and first projection layer (e.g. a released checkpoint converted by
  `python -m s4l_jax.convert simclrv2`), with the export's architecture (and so does the
  student with `student=same`)."""
  trunk = common.export_trunk(export_dir)  # its architecture; ValueError without a record
  from s4l_jax import export  # pylint: disable=g-import-not-at-top (jax only when used)
  if "proj" not in export.load_description(export_dir)["model"]["heads"]:
    raise ValueError(f"pretrained={export_dir} has no projection head 'proj' (e.g. converted "
                     "with --head=none); fine-tuning starts from proj_1: convert with "
                     "--head=projection or supervised")
  del stages["pretrain"]
  stages["finetune"].init_from = export_dir
  stages["finetune"].model.update(trunk)
  if student == "same":
    stages["distill"].model.update(trunk)


def lars(c, base: float, weight_decay: float, warmup_epochs: float):
  c.optimizer.name, c.optimizer.momentum = "lars", 0.9
  c.optimizer.weight_decay, c.optimizer.lars_exclude = weight_decay, "head_classes"
  c.lr.base, c.lr.scaling, c.lr.scale_batch_size = base, "sqrt", 0
  c.lr.schedule, c.lr.warmup_epochs = "cosine", warmup_epochs


def get_config(arg=None):
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", model="r50_1x",
                           student="same", step=0, steps=0, memory=0, pretrained="")
  if a.model not in IMAGENET_MODELS:
    raise ValueError(f"model={a.model!r} unknown; valid: {', '.join(IMAGENET_MODELS)}")
  if a.student not in STUDENTS:
    raise ValueError(f"student={a.student!r} unknown; valid: {', '.join(STUDENTS)}")
  if not 0 <= a.step <= len(STAGES):
    raise ValueError(f"step={a.step} must be 0 (all stages) or 1..{len(STAGES)}")
  if a.pretrained and a.step == 1:
    raise ValueError("pretrained= replaces the pretraining stage (step=1); use step=0, 2 or 3")

  paper = a.regime == "paper"
  stages = {name: config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals,
                                         labeled_batch=256, model=a.model if paper else "")
            for name in STAGES}
  pretrain, finetune, distill = (stages[n] for n in STAGES)

  config_lib.set_objective(pretrain, "simclr")
  strength = datasets.get(a.dataset).simclr_jitter_strength
  pretrain.input.labeled.view = pretrain.input.unlabeled.view = "simclr2" if strength == 1 else (
      f"{views.INPUT_CROPS[pretrain.input.crop]}*2|simclr_augment({strength})")
  pretrain.model.heads = dict(proj=presets.simclr_projection_head(),
                              classes=dict(dims=-1, stop_gradient=True))
  pretrain.loss.memory_size = a.memory
  if a.memory:
    pretrain.ema_decay = 0.999
  pretrain.lr.batch_of = "all"

  finetune.input.labeled.view = "simclr_train"
  finetune.init_from, finetune.init_take = "@pretrain", "trunk+proj_1"
  finetune.model.heads = dict(proj=presets.simclr_projection_head(keep=1),
                              classes=dict(dims=-1, input="proj_1", zero_init=True))

  config_lib.set_objective(distill, "distill")
  distill.frozen_teacher = "@finetune"
  distill.input.labeled.view = distill.input.unlabeled.view = "simclr_train"
  distill.model.heads = dict(classes=-1)
  distill.lr.batch_of = "unlabeled"
  if a.student == "r50_1x":
    distill.model.update(presets.MODEL_PRESETS["r50_1x" if paper else "wrn_tiny"])

  if paper:
    pretrain.input.unlabeled.batch_size, pretrain.input.labeled.batch_size = 3584, 512
    lars(pretrain, 0.1, 1e-4, warmup_epochs=40.0)
    pretrain.lr.epochs_of = "unlabeled"
    budget.set_duration(pretrain, total_unlabeled_epochs=800.0)
    finetune.input.labeled.batch_size = 1024
    lars(finetune, 0.005, 0.0, warmup_epochs=0.0)
    budget.set_duration(finetune, total_epochs=60.0 if a.labels == "1pct" else 30.0)
    distill.input.unlabeled.batch_size, distill.input.labeled.batch_size = 4096, 256
    lars(distill, 0.1, 1e-4, warmup_epochs=20.0)
    distill.lr.epochs_of = "unlabeled"
    budget.set_duration(distill, total_unlabeled_epochs=400.0)
  else:
    for c in stages.values():
      common.small_data_preset(c)
    labeled = pretrain.input.labeled.batch_size
    pretrain.input.unlabeled.batch_size = 2 * labeled
    distill.input.unlabeled.batch_size = 2 * labeled
    for c, base, wd in ((pretrain, 0.1, 1e-4), (finetune, 0.005, 0.0), (distill, 0.1, 1e-4)):
      lars(c, base, wd, warmup_epochs=c.lr.warmup_epochs if c is not finetune else 0.0)
  common.set_steps(a.steps, *stages.values())
  if a.pretrained:
    start_from_export(stages, a.pretrained, a.student)

  c = ml_collections.ConfigDict()
  c.method = "simclrv2"
  c.run_stages = "all" if a.step == 0 else STAGES[a.step - 1]
  c.stages = ml_collections.ConfigDict(stages)
  c.allow_config_change = False  # True: resume the stages under a changed config (warns)
  return c

