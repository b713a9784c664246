"""Pre-activation ResNet trunks (ResNet-50 v2, Wide ResNet) and the trunk + heads model."""
from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from s4l_jax.models.noise import residual_sum, survival_probabilities
from s4l_jax.models.heads import FEATURE_MAP, HeadSpec, apply_heads
from s4l_jax.models.trunk import Trunk, register_trunk


@register_trunk("resnet50v2")
class ResNet50V2(Trunk):
  """ResNet-50 v2 trunk with width factor k: (N, H, W, 3) -> pre_logits (N, 512k).

  Root: 7x7/2 conv (16k channels, pad 3) and 3x3/2 max-pool (zero pad 1, VALID);
  bottleneck units (3, 4, 6, 3) with outputs 64k..512k, stride in the 3x3 conv of
  the first unit of blocks 2-4; final BN + ReLU and global average pooling.
  """
  filters_factor: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, spatial: bool = False):
    k = self.filters_factor
    x = self.conv(16 * k, 7, 2, name="root_conv")(x.astype(self.dtype))
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    x = nn.max_pool(x, (3, 3), (2, 2), padding="VALID")
    unit = self.unit_fn()
    survival = iter(survival_probabilities(16, self.stochastic_depth))
    for b, units in enumerate((3, 4, 6, 3)):
      out = 64 * k * 2**b
      for u in range(units):
        stride = 2 if b > 0 and u == 0 else 1
        x = unit(x, out, stride, train, f"block{b + 1}_unit{u + 1}", next(survival))
      self.sow_block(b + 1, x)
    return self.outputs(self.bn_relu(x, train, "final_bn"), spatial)

  def _unit(self, x, out, stride, train, name, survival):
    """Pre-activation bottleneck unit (bottleneck_v2); `survival`: stochastic depth's p."""
    mid = out // 4
    a = self.bn_relu(x, train, f"{name}_bn0")
    shortcut = x
    if stride > 1 or x.shape[-1] != out:
      shortcut = self.conv(out, 1, stride, name=f"{name}_proj")(a)
    h = self.conv(mid, 1, name=f"{name}_conv1")(a)
    h = self.bn_relu(h, train, f"{name}_bn1")
    h = self.conv(mid, 3, stride, name=f"{name}_conv2")(h)
    h = self.bn_relu(h, train, f"{name}_bn2")
    h = self.conv(out, 1, name=f"{name}_conv3")(h)
    return residual_sum(self, h, shortcut, survival, train)


@register_trunk("wrn")
class WideResNet(Trunk):
  """Pre-activation WRN-depth-width for 32x32 inputs: -> pre_logits (N, 64w).

  Root 3x3 conv (16 channels); 3 groups of (depth - 4) // 6 basic units with
  16w, 32w, 64w channels and strides 1, 2, 2; final BN + ReLU, average pool.
  """
  depth: int = 28
  width: int = 2

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, spatial: bool = False):
    if (self.depth - 4) % 6 or self.depth < 10:
      raise ValueError(f"WRN depth must be 6n + 4 with n >= 1, got {self.depth}.")
    units = (self.depth - 4) // 6
    x = self.conv(16, 3, name="root_conv")(x.astype(self.dtype))
    unit = self.unit_fn()
    survival = iter(survival_probabilities(3 * units, self.stochastic_depth))
    for b, stride in enumerate((1, 2, 2)):
      out = 16 * self.width * 2**b
      for u in range(units):
        x = unit(x, out, stride if u == 0 else 1, train, f"block{b + 1}_unit{u + 1}",
                 next(survival))
      self.sow_block(b + 1, x)
    return self.outputs(self.bn_relu(x, train, "final_bn"), spatial)

  def _unit(self, x, out, stride, train, name, survival):
    """Pre-activation basic unit (two 3x3 convs); `survival`: stochastic depth's p."""
    a = self.bn_relu(x, train, f"{name}_bn0")
    shortcut = x
    if stride > 1 or x.shape[-1] != out:
      shortcut = self.conv(out, 1, stride, name=f"{name}_proj")(a)
    h = self.conv(out, 3, stride, name=f"{name}_conv1")(a)
    h = self.bn_relu(h, train, f"{name}_bn1")
    h = self.conv(out, 3, name=f"{name}_conv2")(h)
    return residual_sum(self, h, shortcut, survival, train)


class Model(nn.Module):
  """Trunk plus heads (`heads.HeadSpec`) on its pre_logits or on each other's endpoints.

  Attributes:
    trunk: module mapping (x, train) -> pre_logits (N, D); its BN settings apply to heads.
    heads: head name -> HeadSpec, in evaluation order (`heads.parse_heads`).
    dropout: dropout rate on pre_logits, which every head reads, in training only (0: off).
  """
  trunk: Trunk
  heads: Mapping[str, HeadSpec]
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> dict[str, jax.Array]:
    """x: (N, H, W, C) float32 in [-1, 1]; returns float32 pre_logits (N, D), each head
    (N, dims[-1]) and each MLP endpoint (N, width)."""
    spatial = any(spec.input == FEATURE_MAP for spec in self.heads.values())
    pre_logits, feature_map = (self.trunk(x, train=train, spatial=True) if spatial
                               else (self.trunk(x, train=train), None))
    if train and self.dropout:
      pre_logits = nn.Dropout(self.dropout, deterministic=False)(pre_logits)
    bn = dict(bn_momentum=self.trunk.bn_momentum, bn_epsilon=self.trunk.bn_epsilon,
              bn_group_size=self.trunk.bn_group_size)
    return apply_heads(self.heads, pre_logits, train, bn, feature_map)
