"""SimCLR's augmentation after the crop (`simclr:data_util.py`): Gaussian blur and the chain
`simclr_augment` (flip, colour jitter, greyscale, blur) on crops (S, S, 3) in [0, 1].

Registered: `blur(p=0.5)`, `simclr_augment(strength=1.0)` (the colour jitter's strength).
"""
import jax
import jax.numpy as jnp

from s4l_jax.data.ops import colour, geometry, registry


def apply_gaussian_blur(image, sigma):
  """SimCLR blur of (S, S, C) with a given `sigma` (px): kernel size S // 10 rounded up to odd
  (radius S // 20: 23 taps at S = 224), normalised, separable, zero ('SAME') padding."""
  size = image.shape[0]
  radius = size // 10 // 2
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-taps**2 / (2 * sigma**2))
  kernel /= kernel.sum()
  d = jnp.arange(size)[:, None] - jnp.arange(size)[None, :]
  mat = jnp.where(jnp.abs(d) <= radius, kernel[jnp.clip(d + radius, 0,
                                                        2 * radius)], 0.0)
  hi = jax.lax.Precision.HIGHEST
  return jnp.einsum("ih,hwc,jw->ijc", mat, image, mat, precision=hi)


def gaussian_blur(rng, image):
  """`apply_gaussian_blur` of (S, S, C) in [0, 1] with sigma ~ U(0.1, 2), drawn per image
  (SimCLR draws one per batch and view)."""
  return apply_gaussian_blur(image, jax.random.uniform(rng, (), minval=0.1, maxval=2.0))


def random_blur(k_blur, k_coin, image, p=0.5):
  """SimCLR `gaussian_blur` with probability `p`, on (S, S, C) in [0, 1]."""
  return jnp.where(jax.random.bernoulli(k_coin, p), gaussian_blur(k_blur, image), image)


def simclr_augment(rng, image, strength=1.0):
  """SimCLR's chain after the crop on (S, S, 3) in [0, 1]: flip, colour jitter (`strength`)
  p=0.8, grey p=0.2, blur p=0.5, clip; the six keys of one split of `rng`."""
  k_f, k_cj, k_pcj, k_g, k_bl, k_pbl = jax.random.split(rng, 6)
  x = geometry.random_flip(k_f, image)
  x = colour.random_color_jitter(k_cj, k_pcj, x, strength=strength)
  x = colour.random_grey(k_g, x)
  x = random_blur(k_bl, k_pbl, x)
  return jnp.clip(x, 0.0, 1.0)


@registry.register_op("blur")
def blur_op(p: float = 0.5):
  """SimCLR's Gaussian blur with probability `p`."""
  registry.check(0 <= p <= 1, f"blur: p must be in [0, 1], got {p!r}")
  return registry.Op(lambda rng, x: random_blur(*jax.random.split(rng), x, p))


@registry.register_op("simclr_augment")
def simclr_augment_op(strength: float = 1.0):
  """SimCLR's chain with colour-jitter strength `strength` (its CIFAR recipe: 0.5)."""
  registry.check(strength >= 0, f"simclr_augment: strength must be >= 0, got {strength!r}")
  return registry.Op(lambda rng, x: simclr_augment(rng, x, strength))
