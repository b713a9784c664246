"""ResNet v1 trunk of SimCLRv2 (`simclr:resnet.py`): v1.5 bottlenecks, width multiplier and
optional selective kernels (SK)."""
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from s4l_jax.models.noise import residual_sum, survival_probabilities
from s4l_jax.models.trunk import Trunk, register_trunk

# depth -> bottleneck units per block group: 50..200 as simclr:resnet.py; 26 = (2, 2, 2, 2)
# is the bottleneck ResNet-26 (e.g. timm's `resnet26`), a cheap real configuration for tests.
BLOCKS = {26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
          200: (3, 24, 36, 3)}
SK_MIN_DIM = 32  # smallest width of an SK unit's attention bottleneck (simclr `min_dim`)


@register_trunk("resnet_v1")
class ResNetV1(Trunk):
  """Post-activation ResNet-`depth` v1.5, width w: (N, H, W, 3) in [-1, 1] -> (N, 2048w).

  The input is mapped to [0, 1], SimCLR's input range, by (x + 1) / 2. Stem: 7x7/2 conv (64w)
  -> BN-ReLU, or with SK (`sk_ratio` > 0) the ResNet-D stem of three 3x3 convs (32w stride 2,
  32w, 64w) each -> BN-ReLU; then 3x3/2 max-pool (SAME). Block groups of filters 64w, 128w,
  256w, 512w (strides 1, 2, 2, 2), each unit 1x1 -> BN-ReLU -> 3x3 (stride here) or SK conv
  -> 1x1 (4 x filters) -> BN (scale initialised to 0) -> + shortcut -> ReLU. The first unit
  of a group has a projection shortcut: 1x1 conv (stride s) -> BN, or with SK (ResNet-D) a
  2x2 average pool (stride s) -> 1x1 conv -> BN. Global average pooling, float32 output.
  Convs: no bias, variance_scaling(1, fan_in, truncated normal), fixed padding. BN defaults
  momentum 0.9, epsilon 1e-5 (SimCLR's).
  """
  depth: int = 50
  width_multiplier: int = 1
  sk_ratio: float = 0.0  # 0: no SK; released SK models: 0.0625
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5

  conv_init: ClassVar[nn.initializers.Initializer] = staticmethod(
      nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"))

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, spatial: bool = False):
    if self.depth not in BLOCKS:
      raise ValueError(f"ResNet v1 depth must be one of {sorted(BLOCKS)}, got {self.depth}.")
    w = self.width_multiplier
    if isinstance(w, bool) or not isinstance(w, int) or w < 1:
      raise ValueError(f"ResNet v1 width_multiplier must be an int >= 1, got {w!r}.")
    if self.sk_ratio < 0:
      raise ValueError(f"ResNet v1 sk_ratio must be >= 0, got {self.sk_ratio}.")
    x = ((x + 1) / 2).astype(self.dtype)
    if self.sk_ratio > 0:
      for i, (features, stride) in enumerate(((32 * w, 2), (32 * w, 1), (64 * w, 1)), 1):
        x = self.bn_relu(self.conv(features, 3, stride, name=f"root_conv{i}")(x), train,
                         f"root_bn{i}")
    else:
      x = self.bn_relu(self.conv(64 * w, 7, 2, name="root_conv")(x), train, "root_bn")
    x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
    unit = self.unit_fn()
    survival = iter(survival_probabilities(sum(BLOCKS[self.depth]), self.stochastic_depth))
    for b, units in enumerate(BLOCKS[self.depth]):
      for u in range(units):
        stride = 2 if b > 0 and u == 0 else 1
        x = unit(x, 64 * w * 2**b, stride, train, f"block{b + 1}_unit{u + 1}", next(survival))
      self.sow_block(b + 1, x)
    return self.outputs(x, spatial)

  def _unit(self, x, filters, stride, train, name, survival):
    """Bottleneck unit (simclr `bottleneck_block`): (N, H, W, C) -> (N, H/s, W/s, 4 filters);
    `survival`: stochastic depth's keep probability of the residual branch."""
    out = 4 * filters
    shortcut = x
    if stride > 1 or x.shape[-1] != out:
      if self.sk_ratio > 0:
        shortcut = self.conv(out, 1, name=f"{name}_proj")(_avg_pool_2x2(x, stride))
      else:
        shortcut = self.conv(out, 1, stride, name=f"{name}_proj")(x)
      shortcut = self.bn(shortcut, train, f"{name}_proj_bn")
    h = self.bn_relu(self.conv(filters, 1, name=f"{name}_conv1")(x), train, f"{name}_bn1")
    h = self.bn_relu(self.conv(filters * (2 if self.sk_ratio > 0 else 1), 3, stride,
                               name=f"{name}_conv2")(h), train, f"{name}_bn2")
    if self.sk_ratio > 0:
      h = self._sk_mix(h, filters, train, name)
    h = self.conv(out, 1, name=f"{name}_conv3")(h)
    h = self.bn(h, train, f"{name}_bn3", scale_init=nn.initializers.zeros)
    return nn.relu(residual_sum(self, h, shortcut, survival, train))

  def _sk_mix(self, u, filters, train, name):
    """Selective-kernel mixing (simclr `sk_conv2d`) of u (N, H, W, 2 filters) = the streams
    U1, U2 (N, H, W, filters): s = GAP(U1 + U2), z = ReLU(BN(1x1 conv(s))) of width
    max(int(filters sk_ratio), 32), logits = 1x1 conv(z) (2 filters) split in two, softmax
    across the two streams -> a1 U1 + a2 U2."""
    u1, u2 = jnp.split(u, 2, axis=-1)
    s = jnp.mean(u1 + u2, axis=(1, 2), keepdims=True)
    mid = max(int(filters * self.sk_ratio), SK_MIN_DIM)
    z = self.bn_relu(self.conv(mid, 1, name=f"{name}_sk_conv1")(s), train, f"{name}_sk_bn")
    logits = self.conv(2 * filters, 1, name=f"{name}_sk_conv2")(z)
    a = jax.nn.softmax(jnp.stack(jnp.split(logits, 2, axis=-1)), axis=0)
    return a[0] * u1 + a[1] * u2


def _avg_pool_2x2(x, stride):
  """TF `average_pooling2d(2, stride)` of the ResNet-D shortcut: stride 1 SAME (padding left
  out of the mean), else `fixed_padding(x, 2)` (one zero row/column after) and VALID."""
  if stride == 1:
    return nn.avg_pool(x, (2, 2), (1, 1), padding="SAME", count_include_pad=False)
  if stride != 2:
    raise ValueError(f"ResNet-D shortcut pools with stride 1 or 2, got {stride}.")
  # Strided slices rather than pad + reduce_window: XLA:CPU (jax 0.10.2) folds the pad into
  # the reduce-window's padding and its YNNPACK path then sums the padded cells as copies of
  # the edge on large inputs (e.g. (5, 1, 1, 1024): 4x the mean), so jitted and eager differed.
  h, w = x.shape[1:3]
  x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
  return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) / 4
