"""Entry point behind main.py: validates the config, records it, then trains."""
import os

import jax

from s4l_jax import train, validation


def run(config, workdir: str) -> dict:
  validation.validate(config)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  return train.run(config, workdir)
