"""Config helpers: loading config files, `:arg` parsing, presets, duration and learning rates."""
import importlib.util
import math
import os
import re
from typing import Any

import ml_collections

from s4l_jax import colorization, evaluators, permutations
from s4l_jax.data import datasets, views
from s4l_jax.models import heads


# Config args every config takes, with their defaults: `evals=full` turns on every
# evaluator kind (`evaluators.add_evals`), passed by each config to `base_config`.
COMMON_ARGS = dict(evals="default")


# Separates the `k=v` items of a config arg: a comma not escaped as `\,`.
_ARG_SEPARATOR = re.compile(r"(?<!\\),")


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses `k=v,k2=v2` (the text after `:` in `--config=file.py:ARG`) over `defaults` and
  `COMMON_ARGS`; a comma inside a value (a path) is written `\\,`.

  Values take the type of their default (bool accepts true/false/1/0). Unknown keys fail
  with a one-line error naming the key and the valid ones.
  """
  defaults = dict(COMMON_ARGS, **defaults)
  out = dict(defaults)
  for item in filter(None, _ARG_SEPARATOR.split(arg or "")):
    key, sep, value = item.replace("\\,", ",").partition("=")
    key = key.strip()
    if key not in defaults:
      comma = (" (a comma inside a value, e.g. in a path, is written \\, : "
               "dataset=folder:/data/a\\,b)") if not sep else ""
      raise ValueError(f"Unknown config arg {key!r}; valid args: "
                       f"{', '.join(sorted(defaults))}{comma}")
    default = defaults[key]
    if not sep and isinstance(default, bool):
      value = "true"
    elif not sep:
      raise ValueError(f"Config arg {key!r} needs a value: {key}=VALUE")
    if isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"Config arg {key}={value!r} is not a bool")
      out[key] = value.lower() in ("true", "1")
    elif isinstance(default, (int, float)):
      try:
        out[key] = type(default)(value)
      except ValueError:
        raise ValueError(f"Config arg {key}={value!r} is not a {type(default).__name__}") from None
    else:
      out[key] = value
  return ml_collections.ConfigDict(out)


# Config keys that name an export directory (`@<stage>` in a pipeline of stages).
EXPORT_PATH_KEYS = ("teacher", "init_from", "frozen_teacher")

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def config_names() -> list[str]:
  """The packaged configs' names (`s4l_jax/configs/<name>.py`)."""
  return sorted(n[:-3] for n in os.listdir(CONFIGS_DIR)
                if n.endswith(".py") and not n.startswith("_"))


def config_path(path_or_name: str) -> str:
  """A config file's path: `path_or_name` itself, or a packaged config's name (`vat` ->
  s4l_jax/configs/vat.py)."""
  if os.sep in path_or_name or path_or_name.endswith(".py"):
    return path_or_name
  return os.path.join(CONFIGS_DIR, f"{path_or_name}.py")


def load_config(path_or_name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file: a path, or a packaged config's name."""
  path = config_path(path_or_name)
  if not os.path.isfile(path):
    raise ValueError(f"No config file {path_or_name!r}; configs: {', '.join(config_names())}")
  spec = importlib.util.spec_from_file_location(
      f"s4l_config_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def dataset_family(dataset: str) -> str:
  """The family name of `dataset` (`folder:PATH` -> `folder`); ValueError listing valid names."""
  return datasets.get(dataset).name


# The run's length: `total_steps` if > 0, else exactly one of the others (`check_duration`).
DURATION_KEYS = ("total_steps", "total_epochs", "total_unlabeled_epochs", "total_examples")
# Units of `lr.warmup_epochs` / `lr.decay_epochs`: passes over the labeled or unlabeled stream.
EPOCH_STREAMS = ("labeled", "unlabeled")


def set_duration(c, **duration):
  """Sets the run's length to the one given `DURATION_KEYS` entry, zeroing the others."""
  (key, value), = duration.items()
  if key not in DURATION_KEYS:
    raise ValueError(f"Unknown duration key {key!r}; valid: {', '.join(DURATION_KEYS)}")
  for k in DURATION_KEYS:
    c[k] = type(c[k])(value if k == key else 0)


def check_duration(config):
  """ValueError unless the run's length is given: `total_steps` > 0 (which overrides the
  others, e.g. `--config.total_steps=N` on an epoch-based preset), or else exactly one of the
  other `DURATION_KEYS` > 0; none may be < 0."""
  values = {k: config[k] for k in DURATION_KEYS}
  for key, value in values.items():
    if value < 0:
      arg = " (the config arg steps=)" if key == "total_steps" else ""
      raise ValueError(f"{key}={value}{arg} must be >= 0")
  if values.pop("total_steps"):
    return
  if sum(bool(v) for v in values.values()) != 1:
    given = ", ".join(f"{k}={v}" for k, v in values.items() if v) or "all 0"
    raise ValueError(f"Set total_steps > 0 (the config arg steps=N) or exactly one of "
                     f"{', '.join(values)} > 0, the others 0; got {given}")


def steps_per_epoch(num_labeled: int, labeled_batch: int) -> int:
  """S4L's epoch is one pass over the *labeled* subset (`s4l:trainer.py`)."""
  return max(1, num_labeled // labeled_batch)


def steps_per_unlabeled_epoch(num_unlabeled: int, unlabeled_batch: int) -> float:
  """Steps of one pass over the unlabeled stream (not rounded: a pass ends mid-batch)."""
  if not unlabeled_batch:
    raise ValueError("Epochs of the unlabeled stream need input.unlabeled.batch_size > 0")
  return num_unlabeled / unlabeled_batch


def schedule_steps_per_epoch(config, num_labeled: int, num_unlabeled: int) -> float:
  """Steps per epoch of `lr.warmup_epochs` / `lr.decay_epochs` (stream `lr.epochs_of`)."""
  if config.lr.epochs_of == "unlabeled":
    return steps_per_unlabeled_epoch(num_unlabeled, config.input.unlabeled.batch_size)
  return steps_per_epoch(num_labeled, config.input.labeled.batch_size)


def total_steps(config, num_labeled: int, num_unlabeled: int) -> int:
  """Training steps of the run (big_vision's steps()): `total_steps` when > 0, else from the one
  other `DURATION_KEYS` entry set.

  `total_epochs` are passes over the labeled subset (S4L's epoch), `total_unlabeled_epochs`
  over the unlabeled stream (the whole train split), `total_examples` labeled examples;
  partial steps round up.
  """
  check_duration(config)
  if config.total_steps:
    return int(config.total_steps)
  if config.total_epochs:
    steps = config.total_epochs * steps_per_epoch(num_labeled, config.input.labeled.batch_size)
  elif config.total_unlabeled_epochs:
    steps = config.total_unlabeled_epochs * steps_per_unlabeled_epoch(
        num_unlabeled, config.input.unlabeled.batch_size)
  else:
    steps = config.total_examples / config.input.labeled.batch_size
  return int(math.ceil(steps))


LR_SCALINGS = ("linear", "sqrt")
LR_BATCHES = ("labeled", "unlabeled", "all")  # `lr.batch_of`: B in the lr scaling


def lr_batch_size(config) -> int:
  """B of the lr scaling: the labeled, the unlabeled or both streams' source images per step."""
  sizes = {"labeled": config.input.labeled.batch_size,
           "unlabeled": config.input.unlabeled.batch_size}
  sizes["all"] = sizes["labeled"] + sizes["unlabeled"]
  return sizes[config.lr.batch_of]


def base_learning_rate(config) -> float:
  """The peak learning rate from `lr.base` and the batch B (`lr_batch_size`).

  `lr.scaling="linear"`: `base * B / scale_batch_size` (or `base` when scale_batch_size is 0);
  `"sqrt"`: `base * sqrt(B)` (SimCLR: 0.075 * sqrt(4096) = 4.8).
  """
  batch = lr_batch_size(config)
  if config.lr.scaling == "sqrt":
    return config.lr.base * math.sqrt(batch)
  if config.lr.scale_batch_size:
    return config.lr.base * batch / config.lr.scale_batch_size
  return config.lr.base


SIMCLR_BN = dict(bn_momentum=0.9, bn_epsilon=1e-5)  # simclr:resnet.py, run.py defaults
SIMCLR_SK_RATIO = 0.0625  # the selective-kernel ratio of every released SimCLRv2 SK model
SIMCLR_PROJ_DIM = 128  # SimCLRv2's projection output width
MODEL_PRESETS = {
    "resnet50v2": dict(name="resnet50v2", filters_factor=4),
    "wrn": dict(name="wrn", depth=28, width=2),
    "wrn_tiny": dict(name="wrn", depth=10, width=1),
    # SimCLRv2 encoders (released: sk_ratio 0 or 0.0625); r26_1x: bottleneck ResNet-26 for CPU.
    "r50_1x": dict(name="resnet_v1", depth=50, width_multiplier=1, sk_ratio=0.0, **SIMCLR_BN),
    "r50_2x_sk": dict(name="resnet_v1", depth=50, width_multiplier=2, sk_ratio=SIMCLR_SK_RATIO,
                      **SIMCLR_BN),
    "r152_3x_sk": dict(name="resnet_v1", depth=152, width_multiplier=3, sk_ratio=SIMCLR_SK_RATIO,
                       **SIMCLR_BN),
    "r26_1x": dict(name="resnet_v1", depth=26, width_multiplier=1, sk_ratio=0.0, **SIMCLR_BN),
}


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


def simclr_projection_head(keep: int = 0) -> dict:
  """SimCLRv2's projection head (`simclr:model_util.py`, 3 layers, hidden widths 0 = the
  encoder's width, no Dense bias, BN on every layer, the last without beta, Dense init
  N(0, 0.01^2)); `keep` = k > 0 keeps only its first k layers (fine-tuning from `proj_k`)."""
  return dict(dims=(0, 0, SIMCLR_PROJ_DIM), batch_norm=True, use_bias=False,
              output_bn_bias=False, kernel_init="normal", keep=keep)


def base_config(*, dataset: str, labels: str, labeled_batch: int, eval_batch: int = 0,
                model: str = "", evals: str = "default") -> ml_collections.ConfigDict:
  """Every key any trainer reads, with the paper's defaults (S4L's released supervised 10%
  row, `s4l:config/supervised_imagenet_10p.sh`); `evals`: the config arg
  (`evaluators.add_evals`).

  Configs start from this, set the objective and its own `loss` section, and return; the
  result is locked by `main.py` so that misspelt overrides fail before any work.
  """
  preset = datasets.get(dataset)
  c = ml_collections.ConfigDict()
  c.objective = "supervised"
  c.seed = 0
  c.dataset = dataset
  c.data_dir = ""             # tfds data_dir ('' = TFDS_DATA_DIR or ~/tensorflow_datasets)
  c.labels = labels           # all | 10pct | 1pct | <int> | <int>perclass
  c.strict_data = False       # True: stop at the first unreadable image instead of skipping
  c.teacher = ""              # export dir: pseudo-label every train image with it first
  c.frozen_teacher = ""       # export dir of a frozen network objectives read as aux["teacher"]
  c.pseudo_labels = ""        # .npz of labels for every train image (written from `teacher`)
  c.pseudo_label_threshold = 0.0  # keep pseudo-labels with teacher confidence >= this (0: all)
  c.pseudo_label_type = "hard"  # hard: the teacher's argmax | soft: its probabilities
  c.pseudo_label_temperature = 1.0  # soft targets: softmax(teacher logits / T)
  # Class balancing (Noisy Student): K > 0 pseudo-labelled images per class, the top-K by
  # confidence, or all of them duplicated up to K; 0: off. Ground truth is never balanced.
  c.pseudo_label_per_class = 0

  c.input = ml_collections.ConfigDict()
  c.input.image_size = preset.image_size
  c.input.crop = preset.crop                       # inception | pad_crop | none
  c.input.labeled = dict(batch_size=labeled_batch, view="train")
  c.input.unlabeled = dict(batch_size=0, view="train")  # batch_size 0: no unlabeled stream
  c.input.eval_batch_size = eval_batch or preset.eval_batch_size
  # Held out from train, never trained on: <int> | <int>perclass | <float>pct | 0 (none).
  c.input.validation = preset.validation
  # memory: decode once to uint8 arrays, views on the device (no TensorFlow);
  # tfdata: stream and augment with tf.data (imagenet2012 always; folders optionally).
  c.input.pipeline = preset.pipelines[0]

  c.model = ml_collections.ConfigDict(dict(
      name="", filters_factor=4, depth=28, width=2, width_multiplier=1, sk_ratio=0.0,
      dtype="float32", bn_momentum=0.99, bn_epsilon=1e-3, bn_group_size=0, remat=False,
      heads=dict(classes=-1),
      dropout=0.0,             # rate on pre_logits in training (Noisy Student: 0.5); 0 = off
      stochastic_depth=1.0))   # last unit's survival prob, linear in depth (0.8); 1 = off
  c.model.update(MODEL_PRESETS[model or preset.model])

  # lars_exclude: top-level modules (e.g. "head_classes") updated by LARS without the trust
  # ratio (plain momentum + weight decay), as SimCLR's `head_supervised`.
  c.optimizer = dict(name="momentum", momentum=0.9, nesterov=False, weight_decay=1e-3,
                     lars_trust_coefficient=0.001, lars_exclude="")
  # scaling: linear (base * B / scale_batch_size; 0 = off) | sqrt (base * sqrt(B)), B = the
  # source images per step of the stream(s) `batch_of` (labeled | unlabeled | all).
  c.lr = dict(base=0.1, scale_batch_size=256, scaling="linear", batch_of="labeled",
              schedule="step", warmup_epochs=5.0,
              decay_epochs=(140.0, 160.0, 180.0), decay_factor=0.1,
              epochs_of="labeled")  # warm-up / decay epochs: passes over this stream
  # The run's length: total_steps if > 0, else exactly one other > 0 (`check_duration`).
  c.total_steps = 0
  c.total_epochs = 200.0      # epochs over the labeled subset, S4L's definition
  c.total_unlabeled_epochs = 0.0  # passes over the unlabeled stream (the train split)
  c.total_examples = 0        # labeled examples seen
  c.ema_halflife_epochs = 0.0  # Polyak averaging of the weights; 0 = off
  c.ema_decay = 0.0           # or its per-step decay (e.g. 0.999); 0 = use ema_halflife_epochs

  c.init_from = ""            # export dir whose weights initialise the model (fine-tuning)
  c.init_take = "all"         # subtrees taken from init_from: all | trunk | trunk+proj_1 | ...
  c.trainable = "all"         # all | heads | +-list of top-level modules (trunk, head_classes)
  # Evaluators by name (big_vision style): the split they score (validation | test) and
  # whether they also score the mean logits over the 4 rotations (`rot_avg_*`). Periodic
  # evals run the validation ones; the end of training runs each once.
  c.evals = ml_collections.ConfigDict(dict(
      validation=dict(split="validation", rotation_average=False),
      test=dict(split="test", rotation_average=False)))
  # Representation evaluators (`s4l_jax.evaluators`): entries with a `kind`.
  evaluators.add_evals(c.evals, evals)
  # results.json's validation_top1_median: the median of the last k validation evaluations.
  c.median_of_last = 20
  c.log_every_steps = 50
  c.eval_every_steps = 0      # 0 = evaluate at the end only; else on validation every N
  c.checkpoint_every_steps = 200
  c.keep_checkpoints = 2
  c.resume_step = 0           # > 0: resume from this kept checkpoint, setting newer ones aside
  # Stop when |loss| > divergence_factor x max(|running median|, 1) (train.DivergenceGuard);
  # 0 = stop on non-finite values only.
  c.divergence_factor = 100.0
  c.allow_config_change = False  # True: resume a workdir under a changed config (warns)
  c.loss = ml_collections.ConfigDict()
  return c


def rotation_averaged_evals(c):
  """Every evaluator also scores the mean logits over the 4 rotations (S4L-Rotation)."""
  for evaluator in c.evals.values():
    evaluator.rotation_average = True


def one_percent_schedule(c):
  """The 1%-label schedule of the supervised row: decays 700/800/900, end 1000 epochs (the
  epochs are over 13,000 labeled images). Unreleased 1% rows reuse it (unverified)."""
  c.lr.decay_epochs = (700.0, 800.0, 900.0)
  set_duration(c, total_epochs=1000.0)


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
  if dataset_family(c.dataset) != "imagenet2012":
    raise ValueError("fidelity=paper mirrors the paper's TPU cores: dataset=imagenet2012 only")
  cores = PAPER_CORES[row]
  rows = sum(c.input[s].batch_size * views.copies(c.input[s].view)
             for s in ("labeled", "unlabeled"))
  c.model.bn_group_size = rows // cores
  if "triplet_groups" in c.loss:
    c.loss.triplet_groups = cores


def pretext_imagenet_schedule(c):
  """The rotation / exemplar pretraining schedule on ImageNet (revisit's recipe, unverified):
  35 passes over the unlabeled stream (the train split), warm-up 5, decays at 15 and 25."""
  c.lr.epochs_of = "unlabeled"
  c.lr.warmup_epochs, c.lr.decay_epochs = 5.0, (15.0, 25.0)
  set_duration(c, total_unlabeled_epochs=35.0)


def pretext_preset(c, family: str, unlabeled_batch=(32, 64)):
  """The pretext rows' optimisation (rotation, exemplar, jigsaw, relative position): on
  ImageNet lr 0.1 (not batch-scaled), weight decay 1e-4, `pretext_imagenet_schedule`;
  elsewhere `small_data_preset` with 8 labeled and `unlabeled_batch` = (digits, others)
  unlabeled images a step."""
  if family == "imagenet2012":
    c.lr.base, c.lr.scale_batch_size, c.optimizer.weight_decay = 0.1, 0, 1e-4
    pretext_imagenet_schedule(c)
  else:
    small_data_preset(c, family)
    c.input.labeled.batch_size = 8
    c.input.unlabeled.batch_size = unlabeled_batch[family != "digits"]


def s4l_variant_preset(c, family: str):
  """The optimisation of the S4L variants of the pretext tasks (S4L-Jigsaw, -Relative-Position,
  -Multi): on ImageNet S4L-Rotation's lr 0.03 (not batch-scaled); elsewhere
  `small_data_preset` with as many unlabeled images a step as labeled ones."""
  if family == "imagenet2012":
    c.lr.base, c.lr.scale_batch_size = 0.03, 0
  else:
    small_data_preset(c, family)
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
  "colorization" (Q = the ab bins' count logits per feature-map position) and Zhang et al.'s
  soft targets (5 nearest bins, sigma 5) and rebalancing (lambda 0.5)."""
  c.input.unlabeled.view = "train"
  c.model.heads.colorization = dict(dims=(len(colorization.ab_bins()),),
                                    input=heads.FEATURE_MAP)
  c.loss.update(dict(neighbours=5, sigma=5.0, rebalance_lambda=0.5))


def supervised_preset(c, family: str, labels: str):
  """The supervised rows' schedule (`s4l:config/supervised_imagenet_{10p,1p}.sh`), or
  `small_data_preset` off ImageNet.

  ImageNet 10%: lr 0.1, wd 1e-3, decays 140/160/180, end 200 epochs (the base_config
  defaults); 1%: lr 0.01, wd 1e-2, decays 700/800/900, end 1000 epochs.
  """
  if family != "imagenet2012":
    small_data_preset(c, family)
  elif labels == "1pct":
    c.lr.base, c.optimizer.weight_decay = 0.01, 1e-2
    one_percent_schedule(c)


def supervised_row(dataset: str, labels: str, steps: int = 0, fidelity: str = "default",
                   evals: str = "default"):
  """The supervised row's config (`configs/supervised.py`; also the teacher-free KD stages)."""
  family = dataset_family(dataset)
  c = base_config(dataset=dataset, labels=labels, evals=evals,
                  labeled_batch=256 if family == "imagenet2012" else 64)
  c.objective = "supervised"
  supervised_preset(c, family, labels)
  if family == "imagenet2012" and labels == "1pct":
    c.input.labeled.view = "inception_crop|flip|hsv_noise"
  per_core_fidelity(c, "supervised", fidelity)
  if steps:
    set_duration(c, total_steps=steps)
  return c


def small_data_preset(c, family: str):
  """CPU/GPU-sized training on digits, cifar10 and folders: cosine schedule, fixed step budget.

  `total_steps` is set explicitly (the S4L epoch count over a few hundred labeled images
  would be arbitrary); the other paper settings (momentum SGD, coupled L2 on kernels,
  linear warm-up) are kept.
  """
  c.lr.schedule = "cosine"
  c.lr.scale_batch_size = 0
  c.lr.warmup_epochs = 2.0
  c.optimizer.weight_decay = 5e-4
  if family == "digits":
    c.input.labeled.batch_size = 32
    set_duration(c, total_steps=400)
    c.lr.base = 0.05
    c.log_every_steps = 50
    c.checkpoint_every_steps = 100
  else:
    c.input.labeled.batch_size = 64
    set_duration(c, total_steps=4000)
    c.lr.base = 0.1
    c.log_every_steps = 100
    c.checkpoint_every_steps = 500


def vat_config(arg: str | None, entmin_weight: float) -> ml_collections.ConfigDict:
  """The VAT row's config (`configs/vat.py`) with `entmin_weight` (0: VAT, 1.0: VAT+EntMin)."""
  a = parse_arg(arg, dataset="imagenet2012", labels="10pct", steps=0, hparams_1pct="10pct",
                fidelity="default")
  family = dataset_family(a.dataset)
  c = base_config(dataset=a.dataset, labels=a.labels, evals=a.evals, labeled_batch=256)
  c.objective = "vat"
  if family == "imagenet2012":
    c.lr.base, c.lr.scale_batch_size = 0.03, 0
    # unverified: google-research/s4l releases no 1% VAT config.
    unreleased_one_percent_preset(c, a.labels, a.hparams_1pct)
  else:
    small_data_preset(c, family)
  c.input.unlabeled.batch_size = c.input.labeled.batch_size
  c.input.unlabeled.view = "train"
  c.loss.vat_eps = 40.0 * c.input.image_size / 224
  c.loss.vat_xi = 1e-6
  c.loss.vat_num_iters = 1
  c.loss.vat_kl_direction = "perturbed_clean"  # released code; "clean_perturbed": paper
  c.loss.vat_normalization = "exact_eps"  # |r_adv| = eps; "released": l2_normalize(eps=1e-12)
  c.loss.vat_apply_to_labeled = True
  c.loss.vat_weight = 0.5
  c.loss.entmin_weight = entmin_weight
  per_core_fidelity(c, "vat_entmin" if entmin_weight else "vat", a.fidelity)
  if a.steps:
    set_duration(c, total_steps=a.steps)
  return c
