"""Models: pre-activation ResNet trunks with linear heads.

`build_model(cfg, num_classes)` returns a `Model` used as
`model.init(rng, x, train=False)`,
`model.apply(variables, x, train=True, mutable=["batch_stats"])` and
`model.apply(variables, x, train=False)`; outputs are dicts of float32 arrays.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from s4l_jax.models.normalization import BatchNorm
from s4l_jax.models.resnet_v2 import Model, ResNet50V2, WideResNet

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_TRUNKS = ("resnet50v2", "wrn")


def build_model(cfg: Any, num_classes: int) -> nn.Module:
  """Builds a `Model` from `cfg` (mapping / ConfigDict).

  Keys: name ("resnet50v2" | "wrn"), filters_factor (4), depth (28), width (2),
  dtype ("float32"), bn_momentum (0.99), bn_epsilon (1e-3), bn_group_size
  (None or 0: whole-batch BN), remat (False: rematerialise each unit in the backward
  pass to save activation memory), heads ({"classes": -1}; a dim of -1 means
  num_classes).
  """
  name = cfg.get("name")
  dtype = cfg.get("dtype", "float32")
  if dtype not in _DTYPES:
    raise ValueError(f"Unknown dtype {dtype!r}; valid: {sorted(_DTYPES)}.")
  common = dict(
      dtype=_DTYPES[dtype],
      bn_momentum=cfg.get("bn_momentum", 0.99),
      bn_epsilon=cfg.get("bn_epsilon", 1e-3),
      bn_group_size=cfg.get("bn_group_size", None) or None,
      remat=cfg.get("remat", False))
  if name == "resnet50v2":
    trunk = ResNet50V2(filters_factor=cfg.get("filters_factor", 4), **common)
  elif name == "wrn":
    trunk = WideResNet(
        depth=cfg.get("depth", 28), width=cfg.get("width", 2), **common)
  else:
    raise ValueError(f"Unknown model name {name!r}; valid: {list(_TRUNKS)}.")
  heads = {k: num_classes if v == -1 else int(v)
           for k, v in dict(cfg.get("heads", {"classes": -1})).items()}
  return Model(trunk=trunk, heads=heads)


__all__ = ["BatchNorm", "Model", "ResNet50V2", "WideResNet", "build_model"]
