"""Config checks that fail in seconds, with one line naming the problem, before any work."""
import os

from s4l_jax import config_lib, distributed, export, objectives
from s4l_jax.data import subsets

_TFDS_FAMILIES = ("cifar10", "imagenet2012")


def validate(config):
  family = config_lib.dataset_family(config.dataset)
  kind, value = subsets.parse_labels_spec(config.labels)
  if kind == "file" and not os.path.isfile(value):
    raise FileNotFoundError(f"labels=file:{value}: no such label list file")
  objectives.get(config.objective)
  for key in ("init_from", "teacher"):  # export dirs
    if config[key]:
      export.load_description(config[key])
  if config.pseudo_labels and not os.path.exists(config.pseudo_labels):
    raise FileNotFoundError(f"pseudo_labels file {config.pseudo_labels!r} does not exist")
  if config.input.labeled.batch_size <= 0:
    raise ValueError("input.labeled.batch_size must be positive")
  for name in ("labeled", "unlabeled"):
    if config.input[name].batch_size:
      distributed.check_divisible(config.input[name].batch_size, f"input.{name}.batch_size")
  distributed.check_divisible(config.input.eval_batch_size, "input.eval_batch_size")
  if family in _TFDS_FAMILIES:  # an unprepared TFDS dataset fails here with the steps to fix it
    from s4l_jax.data import tfds_sources  # pylint: disable=g-import-not-at-top
    tfds_sources.check_prepared(config.dataset, config.data_dir or None)
