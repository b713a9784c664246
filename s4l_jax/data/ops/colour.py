"""Colour ops on RGB crops in [0, 1]: S4L's HSV noise, SimCLR's colour jitter and greyscale,
and the colour maths they share (HSV conversions as `colorsys`, TF's `adjust_*`).

Registered: `hsv_noise`, `color_jitter(strength=1.0, p=0.8)`, `grey(p=0.2)`.
"""
import jax
import jax.numpy as jnp

from s4l_jax.data.ops import registry


def rgb_to_hsv(rgb):
  """RGB in [0, 1] (..., 3) -> HSV in [0, 1] (..., 3), as `colorsys`."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  v = jnp.max(rgb, axis=-1)
  c = v - jnp.min(rgb, axis=-1)
  safe_c = jnp.where(c > 0, c, 1.0)
  s = jnp.where(v > 0, c / jnp.where(v > 0, v, 1.0), 0.0)
  h = jnp.where(v == r, (g - b) / safe_c,
                jnp.where(v == g, (b - r) / safe_c + 2, (r - g) / safe_c + 4))
  h = jnp.where(c > 0, jnp.mod(h / 6.0, 1.0), 0.0)
  return jnp.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv):
  """HSV in [0, 1] (..., 3) -> RGB in [0, 1] (..., 3), as `colorsys`."""
  h, s, v = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
  k = jnp.mod(jnp.array([5.0, 3.0, 1.0]) + h * 6.0, 6.0)
  return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def apply_hsv_noise(image, hue_delta, gamma_log2, scale_log2, shift):
  """S4L `hsvnoise` with given draws on RGB (..., 3) in [0, 1].

  Args:
    image: float RGB in [0, 1].
    hue_delta: scalar hue shift (turns).
    gamma_log2, scale_log2, shift: (2,) parameters for (S, V):
      `c <- c ** 2**gamma_log2 * 2**scale_log2 + shift`.

  Returns:
    RGB in [0, 1], same shape as `image`.
  """
  hsv = rgb_to_hsv(image)
  h = jnp.mod(hsv[..., 0] + hue_delta, 1.0)
  sv = hsv[..., 1:] ** jnp.exp2(gamma_log2) * jnp.exp2(scale_log2) + shift
  hsv = jnp.clip(jnp.concatenate([h[..., None], sv], axis=-1), 0.0, 1.0)
  return hsv_to_rgb(hsv)


def hsv_noise(rng, image):
  """S4L `hsvnoise` on RGB in [0, 1]: one draw of all parameters per call."""
  k_h, k_g, k_s, k_b = jax.random.split(rng, 4)
  return apply_hsv_noise(
      image,
      hue_delta=jax.random.uniform(k_h, (), minval=-0.1, maxval=0.1),
      gamma_log2=jax.random.uniform(k_g, (2,), minval=-2.0, maxval=2.0),
      scale_log2=jax.random.uniform(k_s, (2,), minval=-0.5, maxval=0.5),
      shift=jax.random.uniform(k_b, (2,), minval=-0.1, maxval=0.1))


def _grey(image):
  """Luma of RGB (..., 3) as in `tf.image.rgb_to_grayscale`, shape (..., 1)."""
  return image @ jnp.array([0.2989, 0.5870, 0.1140])[:, None]


def adjust_brightness(image, factor):
  """SimCLRv2 brightness (multiplicative): `image * factor`."""
  return image * factor


def adjust_contrast(image, factor):
  """`tf.image.adjust_contrast` on (H, W, C): scale around the per-channel mean over H, W."""
  mean = image.mean(axis=(0, 1))
  return (image - mean) * factor + mean


def adjust_saturation(image, factor):
  """`tf.image.adjust_saturation` on RGB (..., 3) in [0, 1]: S <- clip(S * factor, 0, 1) in
  HSV."""
  hsv = rgb_to_hsv(image)
  return hsv_to_rgb(hsv.at[..., 1].set(jnp.clip(hsv[..., 1] * factor, 0.0, 1.0)))


def adjust_hue(image, delta):
  """`tf.image.adjust_hue` on RGB (..., 3) in [0, 1]: H <- (H + delta) mod 1 (turns)."""
  hsv = rgb_to_hsv(image)
  return hsv_to_rgb(hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + delta, 1.0)))


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def apply_color_jitter(image, factors, order):
  """SimCLR colour jitter with given draws on (H, W, 3) in [0, 1].

  Args:
    image: float RGB in [0, 1].
    factors: (4,) brightness factor, contrast factor, saturation factor, hue delta.
    order: int (4,), a permutation of `JITTER_OPS` indices, applied first to last.

  Returns:
    RGB in [0, 1], clipped after each op.
  """
  ops = [lambda x, op=op, i=i: op(x, factors[i]) for i, op in enumerate(JITTER_OPS)]
  step = lambda j, x: jnp.clip(jax.lax.switch(order[j], ops, x), 0.0, 1.0)
  return jax.lax.fori_loop(0, len(ops), step, image)


def color_jitter(rng, image, strength=1.0):
  """SimCLR colour jitter on (H, W, 3) in [0, 1]: brightness U(max(0, 1-0.8s), 1+0.8s),
  contrast and saturation U(1-0.8s, 1+0.8s), hue delta U(-0.2s, 0.2s), in random order
  (s = `strength`: SimCLR's `color_jitter_strength`, 1 on ImageNet, 0.5 in its CIFAR recipe)."""
  k_perm, k_b, k_c, k_s, k_h = jax.random.split(rng, 5)
  s8 = 0.8 * strength
  factors = jnp.stack([
      jax.random.uniform(k_b, (), minval=max(0.0, 1 - s8), maxval=1 + s8),
      jax.random.uniform(k_c, (), minval=1 - s8, maxval=1 + s8),
      jax.random.uniform(k_s, (), minval=1 - s8, maxval=1 + s8),
      jax.random.uniform(k_h, (), minval=-0.2 * strength, maxval=0.2 * strength)])
  return apply_color_jitter(image, factors, jax.random.permutation(k_perm, len(JITTER_OPS)))


def random_color_jitter(k_jitter, k_coin, image, p=0.8, strength=1.0):
  """SimCLR `color_jitter` at `strength` with probability `p`, on (S, S, 3) in [0, 1]."""
  return jnp.where(jax.random.bernoulli(k_coin, p), color_jitter(k_jitter, image, strength),
                   image)


def random_grey(k_coin, image, p=0.2):
  """Greyscale (3 equal channels) with probability `p`, on (S, S, 3) in [0, 1]."""
  return jnp.where(jax.random.bernoulli(k_coin, p),
                   jnp.broadcast_to(_grey(image), image.shape), image)


def _check_probability(name, p):
  registry.check(0 <= p <= 1, f"{name}: p must be in [0, 1], got {p!r}")


@registry.register_op("hsv_noise")
def hsv_noise_op():
  """S4L's `hsvnoise` (`hsv_noise`)."""
  return registry.Op(hsv_noise)


@registry.register_op("color_jitter")
def color_jitter_op(strength: float = 1.0, p: float = 0.8):
  """SimCLR's colour jitter at `strength` with probability `p`."""
  registry.check(strength >= 0, f"color_jitter: strength must be >= 0, got {strength!r}")
  _check_probability("color_jitter", p)
  return registry.Op(lambda rng, x: random_color_jitter(*jax.random.split(rng), x, p, strength))


@registry.register_op("grey")
def grey_op(p: float = 0.2):
  """Greyscale with probability `p`."""
  _check_probability("grey", p)
  return registry.Op(lambda rng, x: random_grey(rng, x, p))
