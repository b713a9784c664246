"""Common corruptions at 5 severities, in jax on the device, as ImageNet-C defines them.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019), github.com/hendrycks/robustness `ImageNet-C/imagenet_c/
corruptions.py`: on images x in [0, 1], severities 1..5 with these parameters c:

* gaussian_noise: x + N(0, c^2),              c = .08, .12, .18, .26, .38
* shot_noise:     Poisson(x * c) / c,         c = 60, 25, 12, 5, 3
* gaussian_blur:  Gaussian filter of std c px (edges repeated, truncated at 4 std),
                  c = 1, 2, 3, 4, 6 at 224 px; here scaled by image_size / 224 (ours)
* contrast:       (x - m) * c + m, m the per-channel mean of the image, c = .4, .3, .2, .1, .05
* pixelate:       box-resized to int(S * c) px and back (PIL BOX), c = .6, .5, .4, .3, .25

then clipped to [0, 1] and rounded to uint8 (ImageNet-C stores uint8 images). JPEG, the
weather and digital corruptions of ImageNet-C are not implemented.
"""
import jax
import jax.numpy as jnp
import numpy as np

SEVERITIES = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60.0, 25.0, 12.0, 5.0, 3.0),
    "gaussian_blur": (1.0, 2.0, 3.0, 4.0, 6.0),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
}
REFERENCE_SIZE = 224  # the image size ImageNet-C's blur widths are in pixels of


def box_resize_matrix(src: int, dst: int) -> np.ndarray:
  """(dst, src): PIL's BOX resampling of a length-`src` signal to `dst` (Pillow
  `Resample.c`): output i averages the inputs whose centres lie within half a scale
  (at least half a pixel) of its centre (i + 0.5) src / dst; upsampling is nearest-pixel."""
  scale = src / dst
  width = max(scale, 1.0)
  centers = (np.arange(dst)[:, None] + 0.5) * scale  # Pillow's arithmetic, ties included
  inputs = np.arange(src)[None, :]
  window = ((inputs >= (centers - 0.5 * width + 0.5).astype(int))
            & (inputs < (centers + 0.5 * width + 0.5).astype(int)))
  offsets = (inputs - centers + 0.5) * (1.0 / width)
  weights = (window & (offsets > -0.5) & (offsets <= 0.5)).astype(np.float64)
  return weights / weights.sum(axis=1, keepdims=True)


def pixelate_matrix(size: int, c: float) -> np.ndarray:
  """(size, size): box-downsample to int(size * c) (at least 1) px, box-upsample back."""
  low = max(1, int(size * c))
  return box_resize_matrix(low, size) @ box_resize_matrix(size, low)


def blur_matrix(size: int, sigma: float) -> np.ndarray:
  """(size, size): 1-D Gaussian filter of std `sigma` px, truncated at 4 std, edges repeated
  (scipy / skimage mode 'nearest')."""
  radius = int(4.0 * sigma + 0.5)
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(sigma, 1e-6)) ** 2)
  taps /= taps.sum()
  out = np.zeros((size, size))
  for i in range(size):
    for t, w in zip(range(-radius, radius + 1), taps):
      out[i, min(max(i + t, 0), size - 1)] += w
  return out


def separable(x, matrix):
  """`matrix` (S, S) applied along H and W of x (N, S, S, C)."""
  return jnp.einsum("ih,nhwc,jw->nijc", matrix, x, matrix)


def parameter(name: str, severity: int, image_size: int):
  """(c, matrix): the corruption's parameter at `severity` (1..5) and the (S, S) matrix the
  spatial ones apply (`separable`; the identity for the others)."""
  c = SEVERITIES[name][severity - 1]
  matrix = np.eye(image_size)
  if name == "gaussian_blur":
    matrix = blur_matrix(image_size, c * image_size / REFERENCE_SIZE)
  elif name == "pixelate":
    matrix = pixelate_matrix(image_size, c)
  return np.float32(c), matrix.astype(np.float32)


def _gaussian_noise(x, c, matrix, key):
  del matrix
  return x + c * jax.random.normal(key, x.shape)


def _shot_noise(x, c, matrix, key):
  del matrix
  return jax.random.poisson(key, x * c, x.shape).astype(jnp.float32) / c


def _contrast(x, c, matrix, key):
  del matrix, key
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  return (x - mean) * c + mean


def _spatial(x, c, matrix, key):
  del c, key
  return separable(x, matrix)


_APPLY = {"gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise,
          "gaussian_blur": _spatial, "contrast": _contrast, "pixelate": _spatial}
NAMES = tuple(SEVERITIES)


def corrupt(name, images, param, key):
  """uint8 images (N, S, S, C) -> uint8, corrupted with `param = parameter(name, ...)`; `key`
  seeds the noises. `name` may also be its (traced) index in `NAMES`: one compilation then
  serves every corruption and severity."""
  if isinstance(name, str):
    if name not in SEVERITIES:
      raise ValueError(f"Unknown corruption {name!r}; valid: {', '.join(SEVERITIES)}")
    name = NAMES.index(name)
  x = images.astype(jnp.float32) / 255.0
  x = jax.lax.switch(name, [_APPLY[n] for n in NAMES], x, *param, key)
  return jnp.round(jnp.clip(x, 0.0, 1.0) * 255.0).astype(jnp.uint8)
