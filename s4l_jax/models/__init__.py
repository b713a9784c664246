"""Models: trunks (registry `TRUNKS`, filled by `@register_trunk`) with linear or MLP heads.

`build_model(cfg, num_classes)` returns a `Model` used as
`model.init(rng, x, train=False)`,
`model.apply(variables, x, train=True, mutable=["batch_stats"])` and
`model.apply(variables, x, train=False)`; outputs are dicts of float32 arrays:
`pre_logits`, every head and every MLP endpoint (see `heads`).
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from s4l_jax.models.heads import HeadSpec, parse_heads
from s4l_jax.models.normalization import BatchNorm
# The trunk modules, imported to register their trunks.
from s4l_jax.models.resnet_v1 import ResNetV1
from s4l_jax.models.resnet_v2 import Model, ResNet50V2, WideResNet
from s4l_jax.models.trunk import TRUNKS, Trunk, register_trunk

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_NOT_CONFIG = {"parent", "name", "dtype"}  # module fields that are no config key (dtype: a string)


def _trunk_keys(name: str) -> dict[str, Any]:
  """The trunk's own config keys and defaults (filters_factor; depth, width_multiplier,
  sk_ratio; depth, width) + BN, remat, stochastic_depth."""
  return {f.name: f.default for f in dataclasses.fields(TRUNKS[name])
          if f.name not in _NOT_CONFIG}


def model_record(cfg: Any, num_classes: int) -> dict:
  """`cfg` (mapping / ConfigDict) -> the JSON-able record `build_model` rebuilds from.

  Keys: name (a `TRUNKS` name: "resnet50v2" | "resnet_v1" | "wrn" | any registered), that
  trunk's keys (filters_factor 4;
  depth 50, width_multiplier 1, sk_ratio 0.0; depth 28, width 2), bn_momentum (0.99; resnet_v1
  0.9), bn_epsilon (1e-3; resnet_v1 1e-5), bn_group_size (None or 0: whole-batch
  BN), remat (False: rematerialise each unit in the backward pass to save activation
  memory), stochastic_depth (1.0 = off: the last residual unit's survival probability in
  training, `noise`), dropout (0.0 = off: the rate on pre_logits in training), dtype
  ("float32"), heads ({"classes": -1}, resolved: every head a `HeadSpec.to_dict()` with
  num_classes substituted for -1).
  """
  name = cfg.get("name")
  if name not in TRUNKS:
    raise ValueError(f"Unknown model name {name!r}; valid: {', '.join(sorted(TRUNKS))}.")
  dtype = cfg.get("dtype", "float32")
  if dtype not in _DTYPES:
    raise ValueError(f"Unknown dtype {dtype!r}; valid: {', '.join(_DTYPES)}.")
  record = dict(name=name, **{k: cfg.get(k, d) for k, d in _trunk_keys(name).items()},
                dropout=cfg.get("dropout", 0.0), dtype=dtype)
  record["bn_group_size"] = record["bn_group_size"] or None
  heads = parse_heads(cfg.get("heads", {"classes": -1}), num_classes)
  record["heads"] = {head: spec.to_dict() for head, spec in heads.items()}
  return record


def build_model(cfg: Any, num_classes: int) -> nn.Module:
  """Builds a `Model` from `cfg` (mapping / ConfigDict / `model_record`; keys there)."""
  record = model_record(cfg, num_classes)
  trunk = TRUNKS[record["name"]](
      dtype=_DTYPES[record["dtype"]], **{k: record[k] for k in _trunk_keys(record["name"])})
  return Model(trunk=trunk, heads=parse_heads(record["heads"], num_classes),
               dropout=record["dropout"])


def parameter_modules(cfg: Any) -> list[str]:
  """Top-level parameter modules of the model `cfg` builds: `trunk`, then each head's."""
  heads = parse_heads(cfg.get("heads", {"classes": -1}), num_classes=1)
  return ["trunk"] + [m for name, spec in heads.items() for m in spec.module_names(name)]


__all__ = ["BatchNorm", "HeadSpec", "Model", "ResNet50V2", "ResNetV1", "TRUNKS", "Trunk",
           "WideResNet", "build_model", "model_record", "parameter_modules", "register_trunk"]
