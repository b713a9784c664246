"""Config checks that fail in seconds, with one line naming the problem, before any work."""
import os

from s4l_jax import (budget, config_lib, distributed, evaluators, export, models,  # pylint: disable=g-multiple-import
                     objectives, pseudo_label, storage)
from s4l_jax.data import datasets, sources, streams, subsets, views
from s4l_jax.models import subtrees

MIN_IMAGE_SIZE = 8  # the smallest input size tested (tests train at 8x8)
EVAL_SPLITS = ("validation", "test")


def _require(ok: bool, message: str):
  if not ok:
    raise ValueError(message)


def check_values(config):
  """Rejects numbers that make no sense (negative steps, lr <= 0, ...), naming key and range."""
  budget.check_duration(config)
  _require(config.lr.epochs_of in budget.EPOCH_STREAMS, f"lr.epochs_of="
           f"{config.lr.epochs_of!r} must be one of {', '.join(budget.EPOCH_STREAMS)}")
  _require(config.lr.epochs_of == "labeled" or config.input.unlabeled.batch_size > 0,
           "lr.epochs_of='unlabeled' needs an unlabeled stream (input.unlabeled.batch_size > 0)")
  _require(config.lr.base > 0, f"lr.base={config.lr.base} must be > 0")
  _require(config.lr.scaling in budget.LR_SCALINGS, f"lr.scaling={config.lr.scaling!r} "
           f"must be one of {', '.join(budget.LR_SCALINGS)}")
  _require(config.lr.batch_of in budget.LR_BATCHES, f"lr.batch_of={config.lr.batch_of!r} "
           f"must be one of {', '.join(budget.LR_BATCHES)}")
  for key in ("keep_checkpoints", "checkpoint_every_steps", "log_every_steps"):
    _require(config[key] >= 1, f"{key}={config[key]} must be >= 1")
  _require(config.resume_step >= 0, f"resume_step={config.resume_step} must be >= 0 "
           "(0 = the newest checkpoint)")
  _require(config.divergence_factor >= 0, f"divergence_factor={config.divergence_factor} "
           "must be >= 0 (0 = stop on non-finite values only)")
  _require(config.eval_every_steps >= 0, f"eval_every_steps={config.eval_every_steps} must "
           "be >= 0 (0 = evaluate at the end only)")
  _require(config.input.labeled.batch_size >= 1,
           f"input.labeled.batch_size={config.input.labeled.batch_size} must be >= 1")
  _require(config.median_of_last >= 1, f"median_of_last={config.median_of_last} must be >= 1")
  _require(config.input.eval_batch_size >= 1,
           f"input.eval_batch_size={config.input.eval_batch_size} must be >= 1")
  _require(config.input.image_size >= MIN_IMAGE_SIZE, f"input.image_size="
           f"{config.input.image_size} must be >= {MIN_IMAGE_SIZE} pixels")
  _require(0 <= config.ema_decay < 1, f"ema_decay={config.ema_decay} must be in [0, 1) "
           "(0 = use ema_halflife_epochs)")
  _require(not (config.ema_decay and config.ema_halflife_epochs > 0),
           f"set ema_decay={config.ema_decay} or ema_halflife_epochs="
           f"{config.ema_halflife_epochs}, not both (the other 0)")
  _require(0 <= config.pseudo_label_threshold <= 1, f"pseudo_label_threshold="
           f"{config.pseudo_label_threshold} must be in [0, 1] (0 keeps every pseudo-label)")
  _require(config.pseudo_label_type in pseudo_label.TYPES, f"pseudo_label_type="
           f"{config.pseudo_label_type!r} must be one of {', '.join(pseudo_label.TYPES)}")
  _require(config.pseudo_label_temperature > 0, f"pseudo_label_temperature="
           f"{config.pseudo_label_temperature} must be > 0")
  _require(config.pseudo_label_per_class >= 0, f"pseudo_label_per_class="
           f"{config.pseudo_label_per_class} must be >= 0 (0 = no class balancing)")
  _require(0 <= config.model.dropout < 1, f"model.dropout={config.model.dropout} must be in "
           "[0, 1) (0 = off)")
  _require(0 < config.model.stochastic_depth <= 1, f"model.stochastic_depth="
           f"{config.model.stochastic_depth} must be in (0, 1] (1 = off)")
  _require(config.input.crop in views.INPUT_CROPS, f"input.crop={config.input.crop!r} must "
           f"be one of {', '.join(views.INPUT_CROPS)}")
  eval_crop = views.eval_crop_view(config.input.eval_crop)
  if config.input.pipeline == "tfdata":
    try:
      views.host_twin(eval_crop)
    except ValueError as e:
      raise ValueError(f"input.eval_crop={config.input.eval_crop!r}: {e}") from None
  check_streams(config)


def check_streams(config):
  """Rejects a stream (`streams.declared`) with an unknown source, a negative batch, a view
  the pipeline cannot make, or the pseudo source without pseudo-labels."""
  declared = streams.declared(config.input)
  for name, spec in declared.items():
    _require(spec.source in streams.SOURCES, f"input.{name}.source={spec.source!r} must be "
             f"one of {', '.join(streams.SOURCES)}")
    _require(spec.batch_size >= 0, f"input.{name}.batch_size={spec.batch_size} must be >= 0 "
             f"(0 = no {name} stream)")
  has_pseudo = bool(config.teacher or config.pseudo_labels)
  for name, (_, spec) in streams.active(config.input).items():
    _require(spec.source != "pseudo" or has_pseudo, f"input.{name}.source='pseudo' needs "
             "pseudo-labels: set teacher=DIR/export (or pseudo_labels=FILE)")
  for name in declared:
    try:  # an unknown view or op fails here, before anything is compiled
      spec = views.resolve(config.input[name].view, config.input.crop)
    except ValueError as e:
      raise ValueError(f"input.{name}.{e}") from None
    try:  # and so does a crop op that tf.data lacks
      if config.input.pipeline == "tfdata" and config.input[name].batch_size:
        views.host_twin(spec)
    except ValueError as e:
      raise ValueError(f"input.{name}.view {config.input[name].view!r}: {e}") from None


def check_evals(config):
  """Rejects a bad `input.validation` spec and evaluators that cannot run.

  A spec too large for the dataset fails when the pipeline carves it (subsets.split_train):
  that needs the train labels, which this check does not read.
  """
  has_validation = subsets.parse_validation_spec(config.input.validation)[0] != "none"
  top1 = {}
  for name, evaluator in config.evals.items():
    evaluators.check(name, evaluator)
    if evaluators.kind_of(evaluator) == evaluators.TOP1:
      top1[name] = evaluator
  for name, evaluator in top1.items():
    _require(evaluator.split in EVAL_SPLITS, f"evals.{name}.split={evaluator.split!r} must be "
             f"one of {', '.join(EVAL_SPLITS)}")
  splits = {e.split for e in top1.values()}
  _require("test" in splits, "evals has no evaluator with split='test': results.json reports "
           "the final test accuracy; add one (e.g. evals.test=dict(split='test'))")
  _require(not config.eval_every_steps or (has_validation and "validation" in splits),
           f"eval_every_steps={config.eval_every_steps} evaluates on the validation split, but "
           f"input.validation={config.input.validation!r} and evaluators on "
           f"{sorted(splits)}: set input.validation (e.g. 10pct) or eval_every_steps=0")


def batch_warnings(config, *, num_labeled: int, num_eval: int) -> list[str]:
  """One line for each batch larger than what it draws from (legal, but likely a mistake):
  a labeled batch repeating the labeled images within a step, an eval batch over the size of
  the largest evaluated split (`num_eval` images; mostly padding)."""
  out = []
  labeled = config.input.labeled.batch_size
  if labeled > num_labeled:
    out.append(f"input.labeled.batch_size={labeled} exceeds the {num_labeled} labeled images: "
               f"each step repeats every one about {labeled / num_labeled:.0f} times")
  if config.input.eval_batch_size > num_eval:
    out.append(f"input.eval_batch_size={config.input.eval_batch_size} exceeds the {num_eval} "
               "images of the largest evaluated split: one padded batch (memory for nothing)")
  return out


def validate_config(config):
  """Raises ValueError for a config that cannot train whatever the machine and data: keys,
  values and ranges, the objective's loss keys, parameter subtrees (`launch/run.sh` runs
  this locally, through `main.py --check_only`, before starting anything)."""
  check_values(config)
  check_evals(config)
  # An unknown dataset or a pipeline that cannot serve it fails here, listing the valid ones.
  datasets.check_pipeline(config.dataset, config.input.pipeline)
  subsets.parse_labels_spec(config.labels)
  objectives.check_config(config)
  for key in ("trainable", "init_take"):  # names of top-level parameter subtrees
    subtrees.select(config[key], models.parameter_modules(config.model), key)
  if config.optimizer.lars_exclude:
    subtrees.select(config.optimizer.lars_exclude, models.parameter_modules(config.model),
                    "optimizer.lars_exclude")


def validate(config):
  """Raises ValueError / FileNotFoundError for a config that cannot train, before any work:
  `validate_config`, then what this machine and its files must provide."""
  validate_config(config)
  datasets.check_tensorflow(config.dataset, config.input.pipeline)
  kind, value = subsets.parse_labels_spec(config.labels)
  if kind == "file" and not os.path.isfile(value):
    raise FileNotFoundError(f"labels=file:{value}: no such label list file")
  # An export path `@stage` (a pipeline's earlier stage) is checked once that stage has run.
  exports = [k for k in config_lib.EXPORT_PATH_KEYS if config[k] and config[k][0] != "@"]
  for key in exports:
    export.load_description(config[key])
  if config.pseudo_labels and not storage.exists(config.pseudo_labels):
    raise FileNotFoundError(f"pseudo_labels file {config.pseudo_labels!r} does not exist")
  for name, (_, spec) in streams.active(config.input).items():
    distributed.check_divisible(spec.batch_size, f"input.{name}.batch_size")
  distributed.check_divisible(config.input.eval_batch_size, "input.eval_batch_size")
  # Reads folder names or TFDS metadata only; an unprepared TFDS dataset fails here with the
  # steps to prepare it.
  names = sources.class_names(config.dataset, config.data_dir or None)
  _require(len(names) >= 2, f"{config.dataset} has {export.describe_classes(names)}; classification needs "
           "at least 2 (a folder: dataset has one class per subfolder of PATH/train)")
  for key in ("teacher", "frozen_teacher"):
    if key in exports:
      export.check_classes(config[key], export.load_description(config[key]), config.dataset,
                           names, role=key.replace("_", " "))
