"""Recipes the configs share (big_vision's `configs/common.py`): the paper's schedules, the
small-data regime, the pretext tasks, the supervised and VAT rows, the per-core fidelity.

A recipe sets keys of a `config_lib.base_config` in place. Not a config: `config_lib` lists
no `common` (`config_lib.LIBRARIES`).
"""
import ml_collections

from s4l_jax import budget, colorization, config_lib, permutations
from s4l_jax.data import datasets, pipeline, views
from s4l_jax.models import heads


def small_data_preset(c):
  """`regime=small`: CPU/GPU-sized training, cosine schedule, fixed step budget; batch, steps,
  lr and cadences from the dataset's `DatasetFamily.small`.

  `total_steps` is set explicitly (the S4L epoch count over a few hundred labeled images
  would be arbitrary); the other paper settings (momentum SGD, coupled L2 on kernels,
  linear warm-up) are kept.
  """
  small = datasets.get(c.dataset).small
  c.lr.schedule = "cosine"
  c.lr.scale_batch_size = 0
  c.lr.warmup_epochs = 2.0
  c.optimizer.weight_decay = 5e-4
  c.input.labeled.batch_size = small.batch
  budget.set_duration(c, total_steps=small.steps)
  c.lr.base = small.lr
  c.log_every_steps = small.log_every_steps
  c.checkpoint_every_steps = small.checkpoint_every_steps


def rotation_averaged_evals(c):
  """Every evaluator also scores the mean logits over the 4 rotations (S4L-Rotation)."""
  for evaluator in c.evals.values():
    evaluator.rotation_average = True


def one_percent_schedule(c):
  """The 1%-label schedule of the supervised row: decays 700/800/900, end 1000 epochs (the
  epochs are over 13,000 labeled images). Unreleased 1% rows reuse it (unverified)."""
  c.lr.decay_epochs = (700.0, 800.0, 900.0)
  budget.set_duration(c, total_epochs=1000.0)


# `hparams_1pct` of the unreleased 1% rows (VAT, VAT+EntMin, S4L-Rotation, S4L-Exemplar):
# "10pct": the 10% row's lr and wd; "supervised": moved as the released supervised 1% row
# moved its own (lr / 10, wd x 10). Both guesses: no 1% config of these rows was released.
HPARAMS_1PCT = ("10pct", "supervised")


def unreleased_one_percent_preset(c, labels: str, hparams: str):
  """The 1% preset of an unreleased ImageNet row (c holds its 10% values): with labels=1pct
  the supervised-1% schedule (`one_percent_schedule`) and, for `hparams="supervised"`, lr / 10
  and wd x 10; ValueError for an unknown `hparams` or "supervised" without labels=1pct."""
  if hparams not in HPARAMS_1PCT:
    raise ValueError(f"hparams_1pct={hparams!r} must be one of {', '.join(HPARAMS_1PCT)}")
  if labels != "1pct":
    if hparams != HPARAMS_1PCT[0]:
      raise ValueError(f"hparams_1pct={hparams} needs labels=1pct")
    return
  one_percent_schedule(c)
  if hparams == "supervised":
    c.lr.base, c.optimizer.weight_decay = c.lr.base / 10, c.optimizer.weight_decay * 10


# TPU cores of the S4L README's reproductions (`s4l:README.md`): v3-8 for the supervised and
# pseudo-label rows, v3-32 for VAT, VAT+EntMin, S4L-Rotation and S4L-Exemplar.
PAPER_CORES = {"supervised": 8, "pseudo_label": 8, "vat": 32, "vat_entmin": 32,
               "s4l_rotation": 32, "s4l_exemplar": 32}
FIDELITIES = ("default", "paper")


def per_core_fidelity(c, row: str, fidelity: str):
  """`fidelity=paper` on an ImageNet row: every per-TPU-core setting of the paper at once.

  `model.bn_group_size` = one core's images (all images per step / `PAPER_CORES[row]`, each
  group holding that core's share of both streams, `objective_lib.core_order`; e.g. S4L-
  Rotation (8 + 8) x 4 = 64) and, where the row has it, `loss.triplet_groups` = cores. Set
  from the batch sizes at config time (override bn_group_size too when changing those).
  `default`: global BN and triplet, unchanged. ValueError off ImageNet or for another value.
  """
  if fidelity not in FIDELITIES:
    raise ValueError(f"fidelity={fidelity!r} must be one of {', '.join(FIDELITIES)}")
  if fidelity == "default":
    return
  if config_lib.dataset_family(c.dataset) != "imagenet2012":
    raise ValueError("fidelity=paper mirrors the paper's TPU cores: dataset=imagenet2012 only")
  cores = PAPER_CORES[row]
  c.model.bn_group_size = pipeline.images_per_step(c) // cores
  if "triplet_groups" in c.loss:
    c.loss.triplet_groups = cores


def pretext_paper_schedule(c):
  """The rotation / exemplar pretraining schedule on ImageNet (revisit's recipe, unverified):
  35 passes over the unlabeled stream (the train split), warm-up 5, decays at 15 and 25."""
  c.lr.epochs_of = "unlabeled"
  c.lr.warmup_epochs, c.lr.decay_epochs = 5.0, (15.0, 25.0)
  budget.set_duration(c, total_unlabeled_epochs=35.0)


def pretext_preset(c, regime: str, unlabeled_fraction: float = 1.0):
  """The pretext rows' optimisation (rotation, exemplar, jigsaw, relative position): `paper`:
  lr 0.1 (not batch-scaled), weight decay 1e-4, `pretext_paper_schedule`; `small`:
  `small_data_preset` with 8 labeled images a step and `unlabeled_fraction` of the small
  batch of unlabeled ones (exemplar: 0.5, for its 8 views an image)."""
  if regime == "paper":
    c.lr.base, c.lr.scale_batch_size, c.optimizer.weight_decay = 0.1, 0, 1e-4
    pretext_paper_schedule(c)
  else:
    small_data_preset(c)
    c.input.unlabeled.batch_size = int(c.input.labeled.batch_size * unlabeled_fraction)
    c.input.labeled.batch_size = 8


def s4l_variant_preset(c, regime: str):
  """The optimisation of the S4L variants of the pretext tasks (S4L-Jigsaw, -Relative-Position,
  -Multi): `paper`: S4L-Rotation's lr 0.03 (not batch-scaled); `small`: `small_data_preset`
  with as many unlabeled images a step as labeled ones."""
  if regime == "paper":
    c.lr.base, c.lr.scale_batch_size = 0.03, 0
  else:
    small_data_preset(c)
    c.input.unlabeled.batch_size = c.input.labeled.batch_size


JIGSAW_PERMUTATIONS = 100  # P: the lecture's subset of the 9! orders (Noroozi & Favaro: 1,000)


def jigsaw_task(c, num_permutations: int):
  """The jigsaw pretext task on the unlabeled stream: view `jigsaw`, `loss.permutations` (the
  set itself, `permutations.maximal_hamming`, stored with the config) and the head "jigsaw":
  9 blocks of P logits per tile (`objective_lib.puzzle_logits`)."""
  table = permutations.maximal_hamming(num_permutations, views.NUM_TILES)
  c.input.unlabeled.view = "jigsaw"
  c.loss.permutations = table
  c.model.heads.jigsaw = views.NUM_TILES * len(table)


def relative_position_task(c):
  """The relative-position pretext task on the unlabeled stream: view `relative_position` and
  the head "relative_position": 2 blocks (centre, neighbour) of 8 logits per patch."""
  c.input.unlabeled.view = "relative_position"
  c.model.heads.relative_position = 2 * len(views.NEIGHBOURS)


def colorization_task(c):
  """The colorization pretext task on the unlabeled stream (view `train`): the dense head
  "colorization" (Q = the ab bins' count logits per feature-map position); the loss keys'
  defaults are Zhang et al.'s (`objective_lib.COLORIZATION_LOSS_KEYS`)."""
  c.input.unlabeled.view = "train"
  c.model.heads.colorization = dict(dims=(len(colorization.ab_bins()),),
                                    input=heads.FEATURE_MAP)


EXEMPLAR_EMBED_DIMS = dict(paper=1000, small=128)  # the exemplar embedding's width per regime


def exemplar_loss(c, regime: str):
  """The exemplar triplet loss on an embedding of `EXEMPLAR_EMBED_DIMS[regime]` dimensions
  (`loss.embed_dim`; the other keys' defaults: `objective_lib.EXEMPLAR_LOSS_KEYS`); the head
  "embeddings" follows `loss.embed_dim` (a reference)."""
  c.loss.embed_dim = EXEMPLAR_EMBED_DIMS[regime]
  c.model.heads = dict(classes=-1, embeddings=c.loss.get_ref("embed_dim"))


def student_paper_schedule(c):
  """The paper's schedule of a student trained on every train image (pseudo-labels, MOAM
  step 2): wd 1e-4, decays at 30/60/90, end 100 epochs (of the labeled stream)."""
  c.optimizer.weight_decay = 1e-4
  c.lr.decay_epochs, c.total_epochs = (30.0, 60.0, 90.0), 100.0


def supervised_preset(c, regime: str, labels: str):
  """The supervised rows' schedule (`s4l:config/supervised_imagenet_{10p,1p}.sh`), or
  `small_data_preset`.

  `paper` 10%: lr 0.1, wd 1e-3, decays 140/160/180, end 200 epochs (the base_config
  defaults); 1%: lr 0.01, wd 1e-2, decays 700/800/900, end 1000 epochs.
  """
  if regime == "small":
    small_data_preset(c)
  elif labels == "1pct":
    c.lr.base, c.optimizer.weight_decay = 0.01, 1e-2
    one_percent_schedule(c)


def supervised_row(a) -> ml_collections.ConfigDict:
  """The supervised row's config (`configs/supervised.py`; also the teacher-free KD stages)
  from parsed args `a` (dataset, labels, regime, evals, steps, fidelity); `paper` 1%: HSV
  noise on the crops as `s4l:config/supervised_imagenet_1p.sh`."""
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals,
                             labeled_batch=256)
  supervised_preset(c, a.regime, a.labels)
  if a.regime == "paper" and a.labels == "1pct":
    c.input.labeled.view = "inception_crop|flip|hsv_noise"
  per_core_fidelity(c, "supervised", a.get("fidelity", "default"))
  set_steps(a.steps, c)
  return c


def vat_row(arg: str | None, entmin_weight: float) -> ml_collections.ConfigDict:
  """The VAT row's config (`configs/vat.py`) with `entmin_weight` (0: VAT, 1.0: VAT+EntMin)."""
  a = config_lib.parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0,
                           hparams_1pct="10pct", fidelity="default")
  c = config_lib.base_config(dataset=a.dataset, labels=a.labels, evals=a.evals,
                             labeled_batch=256)
  config_lib.set_objective(c, "vat")
  if a.regime == "paper":
    c.lr.base, c.lr.scale_batch_size = 0.03, 0
    # unverified: google-research/s4l releases no 1% VAT config.
    unreleased_one_percent_preset(c, a.labels, a.hparams_1pct)
  else:
    small_data_preset(c)
  c.input.unlabeled.batch_size = c.input.labeled.batch_size
  c.input.unlabeled.view = "train"
  c.loss.vat_eps = c.loss.vat_eps * c.input.image_size / 224  # declared at 224 px
  c.loss.entmin_weight = entmin_weight
  per_core_fidelity(c, "vat_entmin" if entmin_weight else "vat", a.fidelity)
  set_steps(a.steps, c)
  return c


def set_steps(steps: int, *configs):
  """The config arg `steps=N`: N > 0 training steps for each of `configs`, over its recipe's
  length; 0 keeps the recipe's."""
  for c in configs:
    if steps:
      budget.set_duration(c, total_steps=steps)


# Keys of an export's `model` record that are choices of the run that trained it, not of the
# network's architecture: a run starting from the export keeps its own.
_TRAINING_MODEL_KEYS = ("heads", "dropout", "stochastic_depth", "bn_group_size", "remat", "dtype")


def export_trunk(export_dir: str, missing_ok: bool = False) -> dict:
  """The trunk architecture an export was trained with (its export.json `model` record: name,
  size keys, BatchNorm momentum / epsilon; not `_TRAINING_MODEL_KEYS`), for `config.model`
  of a run initialised from it. With `missing_ok`, {} when EXPORT_DIR has no export.json
  (validation reports it); FileNotFoundError otherwise; ValueError without a model record."""
  from s4l_jax import export, storage  # pylint: disable=g-import-not-at-top (jax only when used)
  if missing_ok and not storage.exists(storage.join(export_dir, export.DESCRIPTION_FILE)):
    return {}
  record = export.load_description(export_dir).get("model")
  if not record:
    raise ValueError(f"{export_dir}: its export.json has no model record (written by an "
                     "older version); re-export it")
  return {k: v for k, v in record.items() if k not in _TRAINING_MODEL_KEYS}
