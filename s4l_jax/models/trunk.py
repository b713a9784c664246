"""`Trunk`: fields and layer factories shared by the trunks, and their registry.

A trunk is a `Trunk` subclass registered under its `model.name` by `@register_trunk("name")`
(`TRUNKS`: name -> class); its dataclass fields become `model.*` config keys
(`models.model_record`). This module imports no trunk: `s4l_jax.models` imports them all, so
that every trunk is registered.
"""
import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from s4l_jax.models.normalization import BatchNorm

INTERMEDIATES = "intermediates"  # the flax collection of the pooled block outputs


class Trunk(nn.Module):
  """Compute dtype, BN settings, remat and stochastic depth; subclasses define `__call__`
  (`(x, train, spatial=False)`, ending with `self.outputs(x, spatial)`) and `_unit`.

  `_unit(self, x, filters, stride, train, name, survival)` is one residual unit (the last five
  arguments static, for `remat`; `survival`: its stochastic-depth keep probability, applied by
  `noise.residual_sum`). `conv_init` is the convolution kernel initialiser.
  """
  dtype: Any = jnp.float32
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  bn_group_size: int | None = None
  remat: bool = False  # recompute each unit's activations in the backward pass (memory)
  stochastic_depth: float = 1.0  # survival prob of the last unit, linear in depth (1: off)

  conv_init: ClassVar[nn.initializers.Initializer] = staticmethod(
      nn.initializers.glorot_uniform())

  def sow_block(self, index: int, x):
    """Records block `index`'s output (N, H, W, C) globally average-pooled, float32 (N, C), as
    the intermediate `block<index>`, only in an apply with mutable=["intermediates"]
    (`endpoints.apply_endpoints`): never in `init`'s variables."""
    if self.is_mutable_collection(INTERMEDIATES) and not self.is_initializing():
      self.sow(INTERMEDIATES, f"block{index}",
               jnp.mean(x.astype(jnp.float32), axis=(1, 2)))

  def outputs(self, x, spatial: bool):
    """The trunk's result from its last feature map x (N, h, w, C): pre_logits, its global
    average (N, C) float32, or with `spatial` (pre_logits, x as float32)."""
    x = x.astype(jnp.float32)
    pooled = jnp.mean(x, axis=(1, 2))
    return (pooled, x) if spatial else pooled

  def unit_fn(self):
    """`self._unit`, rematerialised when `remat` (same parameters, same gradients)."""
    if self.remat:
      return functools.partial(nn.remat(type(self)._unit, static_argnums=(2, 3, 4, 5, 6)), self)
    return self._unit

  def conv(self, features, kernel, stride=1, name=None):
    """Conv without bias, TF-style fixed padding (kernel - 1) // 2 per side (odd kernels:
    the same as TF's SAME at stride 1 and `fixed_padding` + VALID when strided)."""
    p = (kernel - 1) // 2
    return nn.Conv(features, (kernel, kernel), (stride, stride),
                   padding=((p, p), (p, p)), use_bias=False,
                   kernel_init=self.conv_init, dtype=self.dtype,
                   param_dtype=jnp.float32, name=name)

  def bn(self, x, train, name, scale_init=nn.initializers.ones):
    """BatchNorm with the trunk's settings (`scale_init` zeros: a residual branch's last)."""
    return BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     epsilon=self.bn_epsilon, dtype=self.dtype,
                     group_size=self.bn_group_size, scale_init=scale_init, name=name)(x)

  def bn_relu(self, x, train, name):
    return nn.relu(self.bn(x, train, name))


TRUNKS: dict[str, type[Trunk]] = {}  # model.name -> trunk class (`register_trunk`)


def register_trunk(name: str):
  """Class decorator: registers a `Trunk` subclass as `model.name=name`; a KeyError (one line)
  if `name` is taken, a TypeError if the class is no `Trunk`."""
  def register(cls):
    if not (isinstance(cls, type) and issubclass(cls, Trunk)):
      raise TypeError(f"register_trunk({name!r}): {cls!r} is not a Trunk subclass")
    if name in TRUNKS:
      raise KeyError(f"trunk {name!r} is already registered ({TRUNKS[name].__module__}."
                     f"{TRUNKS[name].__qualname__})")
    TRUNKS[name] = cls
    return cls
  return register
