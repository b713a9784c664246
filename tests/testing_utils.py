"""Shared helpers for tests: loading configs, tiny overrides, tiny image folders."""
import contextlib
import os

import numpy as np
import pytest
from PIL import Image

from s4l_jax import config_lib, train
from s4l_jax.config_lib import load_config  # pylint: disable=unused-import (for the tests)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(config, steps: int = 4, batch: int = 16, image_size: int = 8):
  """Shrinks a config to seconds on CPU: tiny WRN, small images, a few steps."""
  config.model.update(dict(name="wrn", depth=10, width=1))
  config.input.image_size = image_size
  config.input.labeled.batch_size = batch
  if config.input.unlabeled.batch_size:
    config.input.unlabeled.batch_size = batch
  config_lib.set_duration(config, total_steps=steps)
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
