"""Batch normalisation with optional "ghost" groups (per-core BN emulation)."""
from typing import Any

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp


class BatchNorm(nn.Module):
  """Drop-in for `nn.BatchNorm` over the last axis, with optional ghost groups.

  `group_size=None`: statistics over the whole batch, numerically identical to
  `flax.linen.BatchNorm` (under `jax.jit` with a sharded batch this is global
  BN). `group_size=g`: the batch (N, ...) is split into N // g consecutive
  groups, each normalised with its own statistics (like per-TPU-core BN); the
  running statistics are updated with the mean over groups of the group mean
  and (biased) group variance. Statistics are always computed in float32. In
  training the normalisation is rematerialised (`jax.checkpoint`): its backward
  pass keeps only x, in x's dtype, and recomputes the statistics.

  Attributes:
    use_running_average: if True, normalise with the running statistics.
    momentum: decay of the running statistics.
    epsilon: added to the variance.
    dtype: output dtype (default: inferred from input and params).
    param_dtype: dtype of `scale` and `bias`.
    use_bias: if False, no `bias` parameter (no shift after scaling).
    group_size: images per ghost-BN group, or None for the whole batch.
    scale_init: initialiser of `scale`.
    bias_init: initialiser of `bias`.
  """
  use_running_average: bool | None = None
  momentum: float = 0.99
  epsilon: float = 1e-3
  dtype: Any = None
  param_dtype: Any = jnp.float32
  use_bias: bool = True
  group_size: int | None = None
  scale_init: nn.initializers.Initializer = nn.initializers.ones
  bias_init: nn.initializers.Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool | None = None):
    """Normalises x (N, ..., C); returns the same shape."""
    use_running_average = nn.merge_param(
        "use_running_average", self.use_running_average, use_running_average)
    c = x.shape[-1]
    ra_mean = self.variable(
        "batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (c,))
    ra_var = self.variable(
        "batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (c,))
    scale = self.param("scale", self.scale_init, (c,), self.param_dtype)
    bias = self.param("bias", self.bias_init, (c,), self.param_dtype) if self.use_bias else None

    dtype = nn.dtypes.canonicalize_dtype(x, scale, bias, dtype=self.dtype)
    if use_running_average:
      out = _affine(x, ra_mean.value, ra_var.value, scale, bias, self.epsilon, dtype)
      return out.reshape(x.shape)
    if self.group_size is None:
      y, axes = x, tuple(range(x.ndim - 1))
    else:
      n, g = x.shape[0], self.group_size
      if n % g:
        raise ValueError(f"Batch size {n} is not divisible by BN group_size {g}.")
      y = x.reshape((n // g, g) + x.shape[1:])  # (G, g, ..., C)
      axes = tuple(range(1, y.ndim - 1))
    # Rematerialised: the backward pass keeps only y (in its own dtype, e.g. bfloat16) and
    # recomputes the statistics, instead of keeping float32 `y - mean` and `2 y` (activation
    # memory: 2 x 4 bytes per element more for every BN, whatever the compute dtype).
    out, mean, var = jax.checkpoint(_normalize_batch, static_argnums=(3, 4, 5))(
        y, scale, bias, axes, self.epsilon, dtype)
    if not self.is_initializing():
      m = self.momentum
      ra_mean.value = m * ra_mean.value + (1 - m) * mean.reshape(-1, c).mean(0)
      ra_var.value = m * ra_var.value + (1 - m) * var.reshape(-1, c).mean(0)
    return out.reshape(x.shape)


def _affine(y, mean, var, scale, bias, epsilon, dtype):
  """(y - mean) * rsqrt(var + eps) * scale [+ bias] in flax.linen's operation order."""
  out = y - mean
  mul = lax.rsqrt(var + epsilon)
  mul *= scale
  out *= mul
  if bias is not None:
    out += bias
  return jnp.asarray(out, dtype)


def _normalize_batch(y, scale, bias, axes, epsilon, dtype):
  """Float32 batch statistics over `axes` (kept) and the normalised y: (out, mean, var)."""
  yf = y.astype(jnp.promote_types(y.dtype, jnp.float32))
  mean = yf.mean(axes, keepdims=True)
  mean2 = lax.square(yf).mean(axes, keepdims=True)
  var = jnp.maximum(0.0, mean2 - lax.square(mean))
  return _affine(y, mean, var, scale, bias, epsilon, dtype), mean, var
