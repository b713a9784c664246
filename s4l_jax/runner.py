"""Entry point behind main.py: validates the config, records it, then trains."""
import json
import os

import jax

from s4l_jax import config_lib, export, objectives, train
from s4l_jax.data import subsets


def validate(config):
  """Fails in seconds, with one line naming the problem, before any data or compilation."""
  config_lib.dataset_family(config.dataset)
  subsets.parse_labels_spec(config.labels)
  objectives.get(config.objective)
  if config.init_from:
    export.load_description(config.init_from)
  if config.pseudo_labels and not os.path.exists(config.pseudo_labels):
    raise FileNotFoundError(f"pseudo_labels file {config.pseudo_labels!r} does not exist")
  if config.input.labeled.batch_size <= 0:
    raise ValueError("input.labeled.batch_size must be positive")


def run(config, workdir: str) -> dict:
  validate(config)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  return train.run(config, workdir)
