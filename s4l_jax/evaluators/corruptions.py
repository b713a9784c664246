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
* jpeg:           saved as JPEG at quality c and decoded, c = 25, 18, 15, 10, 7: baseline
                  JPEG (JFIF YCbCr, 8x8 DCT, the standard's luminance / chrominance tables
                  scaled by libjpeg's quality rule, edges padded by replication), without
                  chroma subsampling (PIL's `subsampling=0`; ImageNet-C used PIL's default
                  4:2:0, which also halves the colour resolution)

then clipped to [0, 1] and rounded to uint8 (ImageNet-C stores uint8 images). The weather and
the other digital corruptions of ImageNet-C are not implemented.
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
    "jpeg": (25.0, 18.0, 15.0, 10.0, 7.0),
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


# JPEG (ITU-T T.81 Annex K): quantisation tables at quality 50, row-major 8x8.
_LUMA_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
                       np.float32).reshape(8, 8)
_CHROMA_TABLE = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32,
                         np.float32).reshape(8, 8)
_RGB_TO_YCBCR = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5],
                          [0.5, -0.418688, -0.081312]], np.float32)  # JFIF, + (0, 128, 128)


def _dct_matrix() -> np.ndarray:
  """(8, 8) orthonormal DCT-II: D[k, n] = a(k) cos((2n + 1) k pi / 16)."""
  k, n = np.arange(8)[:, None], np.arange(8)[None, :]
  return (np.sqrt(np.where(k == 0, 1 / 8, 2 / 8)) * np.cos((2 * n + 1) * k * np.pi / 16)
          ).astype(np.float32)


def jpeg_tables(quality):
  """The (8, 8) luminance and chrominance quantisers at `quality` (1..100), libjpeg's
  `jpeg_quality_scaling`: scale = floor(5000 / q) below 50, else 200 - 2 q (integers); entries
  floor((t * scale + 50) / 100) clipped to [1, 255]."""
  scale = jnp.where(quality < 50, jnp.floor(5000.0 / quality), 200.0 - 2.0 * quality)
  table = lambda t: jnp.clip(jnp.floor((t * scale + 50.0) / 100.0), 1.0, 255.0)
  return table(_LUMA_TABLE), table(_CHROMA_TABLE)


def _jpeg(x, c, matrix, key):
  """x (N, S, S, C) in [0, 1] through baseline JPEG at quality c and back (4:4:4): samples
  rounded to 8 bits after the colour conversion and after the inverse DCT, as libjpeg's."""
  del matrix, key
  n, size, _, channels = x.shape
  pad = -size % 8
  x = jnp.pad(x * 255.0, ((0, 0), (0, pad), (0, pad), (0, 0)), mode="edge")
  offset = jnp.array([0.0, 128.0, 128.0][:channels])
  if channels == 3:
    x = x @ _RGB_TO_YCBCR.T
  x = jnp.clip(jnp.round(x + offset), 0.0, 255.0)
  luma, chroma = jpeg_tables(c)
  q = jnp.stack([luma] + [chroma] * (channels - 1), axis=-1)[:, None]  # (8, 1, 8, C)
  side = (size + pad) // 8
  blocks = x.reshape(n, side, 8, side, 8, channels) - 128.0
  dct = _dct_matrix()
  coef = jnp.einsum("ki,nhiwjc,lj->nhkwlc", dct, blocks, dct)
  coef = jnp.round(coef / q) * q
  blocks = jnp.einsum("ki,nhkwlc,lj->nhiwjc", dct, coef, dct) + 128.0
  x = jnp.clip(jnp.round(blocks), 0.0, 255.0).reshape(n, side * 8, side * 8, channels)
  x = x[:, :size, :size] - offset
  if channels == 3:
    x = x @ np.linalg.inv(_RGB_TO_YCBCR).T.astype(np.float32)
  return x / 255.0


def _spatial(x, c, matrix, key):
  del c, key
  return separable(x, matrix)


_APPLY = {"gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise,
          "gaussian_blur": _spatial, "contrast": _contrast, "pixelate": _spatial,
          "jpeg": _jpeg}
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
