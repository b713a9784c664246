"""Config helpers: `:arg` parsing, dataset presets, duration and learning-rate arithmetic."""
import math
from typing import Any

import ml_collections


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses `k=v,k2=v2` (the text after `:` in `--config=file.py:ARG`) over `defaults`.

  Values take the type of their default (bool accepts true/false/1/0). Unknown keys fail
  with a one-line error naming the key and the valid ones.
  """
  out = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    key = key.strip()
    if key not in defaults:
      raise ValueError(f"Unknown config arg {key!r}; valid args: {', '.join(sorted(defaults))}")
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


# Input and model defaults per dataset family. The ImageNet entry is the paper's setting;
# `validation` is the size of the held-out set carved from train (subsets.split_train), as
# the S4L paper's 1,000 ImageNet images (one per class).
DATASET_PRESETS = {
    "imagenet2012": dict(image_size=224, crop="inception", model="resnet50v2",
                         eval_batch_size=400, validation="1000"),
    "cifar10": dict(image_size=32, crop="pad_crop", model="wrn", eval_batch_size=500,
                    validation="1000"),
    "folder": dict(image_size=32, crop="pad_crop", model="wrn", eval_batch_size=500,
                   validation="10pct"),
    "digits": dict(image_size=16, crop="pad_crop", model="wrn_tiny", eval_batch_size=360,
                   validation="10pct"),
}


def dataset_family(dataset: str) -> str:
  family = dataset.split(":", 1)[0]
  if family not in DATASET_PRESETS:
    raise ValueError(f"Unknown dataset {dataset!r}; valid: imagenet2012, cifar10, digits, "
                     "folder:PATH")
  return family


def steps_per_epoch(num_labeled: int, labeled_batch: int) -> int:
  """S4L's epoch is one pass over the *labeled* subset (methods.md 2.1)."""
  return max(1, num_labeled // labeled_batch)


def total_steps(config, num_labeled: int) -> int:
  if config.total_steps > 0:
    return int(config.total_steps)
  spe = steps_per_epoch(num_labeled, config.input.labeled.batch_size)
  return int(math.ceil(config.total_epochs * spe))


def base_learning_rate(config) -> float:
  """`lr * batch / scale_batch_size` (linear scaling) or `lr` when scaling is off (0)."""
  if config.lr.scale_batch_size:
    return config.lr.base * config.input.labeled.batch_size / config.lr.scale_batch_size
  return config.lr.base


MODEL_PRESETS = {
    "resnet50v2": dict(name="resnet50v2", filters_factor=4),
    "wrn": dict(name="wrn", depth=28, width=2),
    "wrn_tiny": dict(name="wrn", depth=10, width=1),
}


def base_config(*, dataset: str, labels: str, labeled_batch: int, eval_batch: int = 0,
                model: str = "") -> ml_collections.ConfigDict:
  """Every key any trainer reads, with the paper's defaults (methods.md 2.4, 2.6).

  Configs start from this, set the objective and its own `loss` section, and return; the
  result is locked by `main.py` so that misspelt overrides fail before any work.
  """
  preset = DATASET_PRESETS[dataset_family(dataset)]
  c = ml_collections.ConfigDict()
  c.objective = "supervised"
  c.seed = 0
  c.dataset = dataset
  c.data_dir = ""             # tfds data_dir ('' = TFDS_DATA_DIR or ~/tensorflow_datasets)
  c.labels = labels           # all | 10pct | 1pct | <int> | <int>perclass
  c.strict_data = False       # True: stop at the first unreadable image instead of skipping
  c.teacher = ""              # export dir: pseudo-label every train image with it first
  c.pseudo_labels = ""        # .npz of labels for every train image (written from `teacher`)
  c.pseudo_label_threshold = 0.0  # keep pseudo-labels with teacher confidence >= this (0: all)

  c.input = ml_collections.ConfigDict()
  c.input.image_size = preset["image_size"]
  c.input.crop = preset["crop"]                       # inception | pad_crop | none
  c.input.labeled = dict(batch_size=labeled_batch, view="train")
  c.input.unlabeled = dict(batch_size=0, view="train")  # batch_size 0: no unlabeled stream
  c.input.eval_batch_size = eval_batch or preset["eval_batch_size"]
  # Held out from train, never trained on: <int> | <int>perclass | <float>pct | 0 (none).
  c.input.validation = preset["validation"]
  # memory: decode once to uint8 arrays, views on the device (no TensorFlow);
  # tfdata: stream and augment with tf.data (imagenet2012 always; folders optionally).
  c.input.pipeline = "tfdata" if dataset == "imagenet2012" else "memory"

  c.model = ml_collections.ConfigDict(dict(
      name="", filters_factor=4, depth=28, width=2, dtype="float32", bn_momentum=0.99,
      bn_epsilon=1e-3, bn_group_size=0, remat=False, heads=dict(classes=-1)))
  c.model.update(MODEL_PRESETS[model or preset["model"]])

  c.optimizer = dict(name="momentum", momentum=0.9, nesterov=False, weight_decay=1e-3,
                     lars_trust_coefficient=0.001)
  c.lr = dict(base=0.1, scale_batch_size=256, schedule="step", warmup_epochs=5.0,
              decay_epochs=(140.0, 160.0, 180.0), decay_factor=0.1)
  c.total_epochs = 200.0      # epochs over the labeled subset, S4L's definition
  c.total_steps = 0           # > 0 overrides total_epochs
  c.ema_halflife_epochs = 0.0  # Polyak averaging of the weights; 0 = off

  c.init_from = ""            # export dir whose weights initialise the trunk (fine-tuning)
  c.trainable = "all"         # all | heads (linear evaluation of a frozen trunk)
  # Evaluators by name (big_vision style): the split they score (validation | test) and
  # whether they also score the mean logits over the 4 rotations (`rot_avg_*`). Periodic
  # evals run the validation ones; the end of training runs each once.
  c.evals = ml_collections.ConfigDict(dict(
      validation=dict(split="validation", rotation_average=False),
      test=dict(split="test", rotation_average=False)))
  c.log_every_steps = 50
  c.eval_every_steps = 0      # 0 = evaluate at the end only; else on validation every N
  c.checkpoint_every_steps = 200
  c.keep_checkpoints = 2
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
  c.lr.decay_epochs, c.total_epochs = (700.0, 800.0, 900.0), 1000.0


def supervised_preset(c, family: str, labels: str):
  """The supervised rows' schedule (methods.md 2.6), or `small_data_preset` off ImageNet.

  ImageNet 10%: lr 0.1, wd 1e-3, decays 140/160/180, end 200 epochs (the base_config
  defaults); 1%: lr 0.01, wd 1e-2, decays 700/800/900, end 1000 epochs.
  """
  if family != "imagenet2012":
    small_data_preset(c, family)
  elif labels == "1pct":
    c.lr.base, c.optimizer.weight_decay = 0.01, 1e-2
    one_percent_schedule(c)


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
    c.total_steps = 400
    c.lr.base = 0.05
    c.log_every_steps = 50
    c.checkpoint_every_steps = 100
  else:
    c.input.labeled.batch_size = 64
    c.total_steps = 4000
    c.lr.base = 0.1
    c.log_every_steps = 100
    c.checkpoint_every_steps = 500
