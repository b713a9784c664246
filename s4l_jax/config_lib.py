"""Configs' schema (`base_config`), their `:arg` parsing and their loading by name or path.

The recipes configs share live in `s4l_jax/configs/common.py`; a run's length and peak
learning rate from its config in `s4l_jax/budget.py`.
"""
import importlib.util
import os
import re
from typing import Any

import ml_collections

from s4l_jax import evaluators, objectives
from s4l_jax.data import datasets
from s4l_jax.models import presets


# Config args every config takes, with their defaults: `evals=full` turns on every
# evaluator kind (`evaluators.add_evals`), passed by each config to `base_config`;
# `regime=paper|small` (`datasets.REGIMES`; '' = `paper` on the datasets the config's paper
# trained on, `small` elsewhere).
COMMON_ARGS = dict(evals="default", regime="")

# The datasets a config's paper trained on where it declares none: the S4L paper's ImageNet.
S4L_PAPER_DATASETS = ("imagenet2012",)


# Separates the `k=v` items of a config arg: a comma not escaped as `\,`.
_ARG_SEPARATOR = re.compile(r"(?<!\\),")


def parse_arg(arg: str | None, *, paper_datasets: tuple[str, ...] = S4L_PAPER_DATASETS,
              **defaults: Any) -> ml_collections.ConfigDict:
  """Parses `k=v,k2=v2` (the text after `:` in `--config=file.py:ARG`) over `defaults` and
  `COMMON_ARGS`; a comma inside a value (a path) is written `\\,`.

  Values take the type of their default (bool accepts true/false/1/0). Unknown keys fail
  with a one-line error naming the key and the valid ones. `regime` left empty becomes
  `paper` where the `dataset` arg's family is one of `paper_datasets` (the families the
  config's paper trained on), else `small`.
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
  if "dataset" in out and not out["regime"]:
    out["regime"] = "paper" if datasets.get(out["dataset"]).name in paper_datasets else "small"
  if out["regime"] and out["regime"] not in datasets.REGIMES:
    raise ValueError(f"regime={out['regime']!r} must be one of {', '.join(datasets.REGIMES)}")
  return ml_collections.ConfigDict(out)


# Config keys that name an export directory (`@<stage>` in a pipeline of stages).
EXPORT_PATH_KEYS = ("teacher", "init_from", "frozen_teacher")

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


# Modules of s4l_jax/configs/ that are no config: the recipes the configs share.
LIBRARIES = ("common",)


def config_names() -> list[str]:
  """The packaged configs' names (`s4l_jax/configs/<name>.py`)."""
  return sorted(n[:-3] for n in os.listdir(CONFIGS_DIR)
                if n.endswith(".py") and not n.startswith("_") and n[:-3] not in LIBRARIES)


def config_path(path_or_name: str) -> str:
  """A config file's path: `path_or_name` itself, or a packaged config's name (`vat` ->
  s4l_jax/configs/vat.py)."""
  if os.sep in path_or_name or path_or_name.endswith(".py"):
    return path_or_name
  if path_or_name in LIBRARIES:
    raise ValueError(f"{path_or_name!r} is no config; configs: {', '.join(config_names())}")
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
  if not hasattr(module, "get_config"):
    raise ValueError(f"{path_or_name} has no get_config(arg): not a config; configs: "
                     f"{', '.join(config_names())}")
  return module.get_config(arg)


def dataset_family(dataset: str) -> str:
  """The family name of `dataset` (`folder:PATH` -> `folder`); ValueError listing valid names."""
  return datasets.get(dataset).name


def base_config(*, dataset: str, labels: str, labeled_batch: int, eval_batch: int = 0,
                model: str = "", evals: str = "default") -> ml_collections.ConfigDict:
  """Every key any trainer reads, with the paper's defaults (S4L's released supervised 10%
  row, `s4l:config/supervised_imagenet_10p.sh`); `evals`: the config arg
  (`evaluators.add_evals`).

  Configs start from this, set the objective (`set_objective`: its `loss` defaults) and the
  `loss` keys their recipe changes, apply recipes (`s4l_jax/configs/common.py`), and return; the
  result is locked by `main.py` so that misspelt overrides fail before any work.
  """
  preset = datasets.get(dataset)
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = dataset
  c.data_dir = ""             # tfds data_dir ('' = TFDS_DATA_DIR or ~/tensorflow_datasets)
  c.labels = labels           # all | 10pct | 1pct | <int> | <int>perclass
  c.strict_data = False       # True: stop at the first unreadable image instead of skipping
  # Pseudo-labels: a stream of source `pseudo` draws them, else they join the labeled source
  # (one shared stream; `data/streams.py`).
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
  # The train streams (`data/streams.py`): name -> {source: labeled | unlabeled | pseudo,
  # batch_size (global; 0: not in the batch), view}; objectives read batch[name].
  c.input.labeled = dict(source="labeled", batch_size=labeled_batch, view="train")
  c.input.unlabeled = dict(source="unlabeled", batch_size=0, view="train")
  c.input.eval_batch_size = eval_batch or preset.eval_batch_size
  c.input.eval_crop = preset.eval_crop  # a deterministic crop op, both pipelines (views.md)
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
  c.model.update(presets.MODEL_PRESETS[model or preset.model])

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
  set_objective(c, "supervised")
  return c


def set_objective(c, objective: str):
  """Makes `c` a run of `objective`: `c.objective`, and `c.loss` = the objective's declared
  defaults (`objectives.loss_defaults`), which the config then overrides where its recipe
  differs."""
  c.objective = objective
  c.loss = ml_collections.ConfigDict(objectives.loss_defaults(objective))
