"""Shared helpers for tests: loading configs, tiny overrides, tiny image folders."""
import contextlib
import os

import numpy as np
import pytest
from PIL import Image

from s4l_jax import budget, train
from s4l_jax.config_lib import load_config  # pylint: disable=unused-import (for the tests)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(config, steps: int = 4, batch: int = 16, image_size: int = 8):
  """Shrinks a config to seconds on CPU: tiny WRN, small images, a few steps."""
  config.model.update(dict(name="wrn", depth=10, width=1))
  config.input.image_size = image_size
  config.input.labeled.batch_size = batch
  if config.input.unlabeled.batch_size:
    config.input.unlabeled.batch_size = batch
  budget.set_duration(config, total_steps=steps)
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  return config


def write_image_folder(root, classes=("ant", "bee", "cat"), per_class=(12, 4), size=12,
                       seed=0):
  """root/{train,test}/<class>/*.png|jpg: class c is a noisy image of brightness 60*c."""
  rng = np.random.default_rng(seed)
  for split, n in zip(("train", "test"), per_class):
    for c, name in enumerate(classes):
      os.makedirs(os.path.join(root, split, name), exist_ok=True)
      for i in range(n):
        pixels = np.clip(60 * c + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        ext = "png" if i % 2 else "jpg"
        Image.fromarray(pixels).save(os.path.join(root, split, name, f"{i:03d}.{ext}"))
  return str(root)


@contextlib.contextmanager
def sigterm_during_step(step: int):
  """Within: training behaves as if SIGTERM arrived during `step` (it saves and exits)."""
  def requested_at(self, current):
    if current == step:
      self.signal_name = "SIGTERM"
    return self.signal_name is not None
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(train._Preemption, "requested_at", requested_at)  # pylint: disable=protected-access
    yield


def run_full_and_interrupted(config_fn, tmp_path, stop_at: int = 2) -> tuple[dict, dict]:
  """`config_fn()` trained to its end in tmp_path/full, and in tmp_path/resumed stopped by
  SIGTERM during step `stop_at` then re-run (asserted to resume there); returns the two runs'
  last checkpoints (restored state trees), which a bit-identical resume makes equal."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from s4l_jax import runner  # pylint: disable=g-import-not-at-top
  full, resumed = tmp_path / "full", tmp_path / "resumed"
  last = runner.run(config_fn(), str(full))["steps"]
  with sigterm_during_step(stop_at):
    with pytest.raises(SystemExit, match=f"SIGTERM: saved step {stop_at}"):
      runner.run(config_fn(), str(resumed))
  assert runner.run(config_fn(), str(resumed))["resumed_from_step"] == stop_at
  with ocp.StandardCheckpointer() as checkpointer:
    return tuple(checkpointer.restore(str(d / "checkpoints" / str(last) / "default"))
                 for d in (full, resumed))
