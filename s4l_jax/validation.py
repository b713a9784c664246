"""Config checks that fail in seconds, with one line naming the problem, before any work."""
import os

from s4l_jax import config_lib, export, objectives
from s4l_jax.data import subsets


def validate(config):
  config_lib.dataset_family(config.dataset)
  subsets.parse_labels_spec(config.labels)
  objectives.get(config.objective)
  if config.init_from:
    export.load_description(config.init_from)
  if config.pseudo_labels and not os.path.exists(config.pseudo_labels):
    raise FileNotFoundError(f"pseudo_labels file {config.pseudo_labels!r} does not exist")
  if config.input.labeled.batch_size <= 0:
    raise ValueError("input.labeled.batch_size must be positive")
